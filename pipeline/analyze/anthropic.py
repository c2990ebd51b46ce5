"""Claude as the analyzer, through the ``anthropic`` SDK: all of a call's checks in one request.

The request forces one tool call (``tool_choice``) whose input schema asks, for every check by
name, a ``result`` (``PASS``/``FAIL``/``NOT_APPLICABLE``), an ``evidence`` quote and a
``reason``. The answer is not taken on trust:

- a check Claude left out, or answered with a result outside the schema, is ``NOT_EVALUATED``;
- the evidence must occur in the transcript (compared like the rules analyzer compares phrases:
  case, punctuation and spacing aside); a quote that does not is kept but the reason carries a
  warning, so an operator never mistakes an invented quote for a real one;
- a speaker-restricted check on a transcript without speaker separation is judged on the whole
  call, and its reason says so.

Model, base URL and timeout come from ``[anthropic]``; the SDK's retries are off (the pipeline
retries, see ``pipeline.provider``). Anthropic types never leave this module.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from ingestd import errors
from ingestd.config import AnthropicSettings
from ingestd.models import CheckResult
from pipeline.analyze.base import CheckOutcome, CheckSpec
from pipeline.analyze.rules import normalise
from pipeline.provider import retryable_status
from pipeline.transcribe.base import Transcript

TOOL_NAME = "record_check_results"
MAX_TOKENS = 4096
ANSWERS = (CheckResult.PASS.value, CheckResult.FAIL.value, CheckResult.NOT_APPLICABLE.value)
SYSTEM_PROMPT = (
    "You review call-centre calls for quality. You get a transcript (one line per utterance: "
    "start time, speaker, text) and a list of quality checks. Judge every check only on what "
    "the transcript says. For each check give PASS, FAIL or NOT_APPLICABLE (the check does not "
    "apply to this call), quote the transcript words that support your answer exactly as they "
    "appear (or null when nothing is quoted), and give a one-sentence reason. Record all "
    f"results with one call of the {TOOL_NAME} tool.")


class AnthropicAnalyzer:
    """Evaluates every kind of check with Claude (see module docstring)."""

    provider = "anthropic"

    def __init__(self, api_key: str, settings: AnthropicSettings) -> None:
        self.api_key = api_key
        self.settings = settings

    async def analyze(self, transcript: Transcript,
                      checks: list[CheckSpec]) -> list[CheckOutcome]:
        """One request for all ``checks``; one outcome per check, in order."""
        if not checks:
            return []
        answers = await self._ask(transcript, checks)
        return [_outcome(check, answers.get(check.name), transcript) for check in checks]

    async def _ask(self, transcript: Transcript,
                   checks: list[CheckSpec]) -> dict[str, dict[str, Any]]:
        try:
            async with anthropic.AsyncAnthropic(
                    api_key=self.api_key, base_url=self.settings.base_url or None,
                    timeout=self.settings.timeout_seconds, max_retries=0) as client:
                message = await client.messages.create(
                    model=self.settings.model, max_tokens=MAX_TOKENS, system=SYSTEM_PROMPT,
                    tools=[_tool(checks)], tool_choice={"type": "tool", "name": TOOL_NAME},
                    messages=[{"role": "user", "content": prompt(transcript, checks)}])
        except anthropic.APITimeoutError as exc:
            raise errors.ProviderError(
                f"Claude did not answer within {self.settings.timeout_seconds:g} s",
                retryable=True) from exc
        except anthropic.APIConnectionError as exc:
            raise errors.ProviderError(f"could not reach Claude: {exc}", retryable=True) from exc
        except anthropic.APIStatusError as exc:
            raise errors.ProviderError(
                f"Claude answered HTTP {exc.status_code}: {_error_detail(exc.body)}",
                retryable=retryable_status(exc.status_code)) from exc
        return _answers(message)


def prompt(transcript: Transcript, checks: list[CheckSpec]) -> str:
    """The user message: the transcript, then the checks as JSON."""
    lines = [f"[{u.start:.1f}s] {u.speaker.value}: {u.text}" for u in transcript.utterances]
    separation = ("Speakers are labelled agent and customer." if transcript.separated else
                  "Speakers could not be told apart (all labelled unknown): judge checks "
                  "restricted to one speaker on the whole call.")
    body = "\n".join(lines) or "(the transcript is empty: nothing was said)"
    return (f"Transcript. {separation}\n{body}\n\nChecks:\n"
            f"{json.dumps([_describe(c) for c in checks], indent=1)}")


def _describe(check: CheckSpec) -> dict[str, Any]:
    what = {
        "phrase": "PASS if any of the phrases (or a clear equivalent) is said",
        "forbidden_phrase": "FAIL if any of the phrases (or a clear equivalent) is said",
        "regex": "PASS if some utterance matches the regular expression",
        "llm": "answer the question about the call",
    }[check.kind.value]
    described: dict[str, Any] = {"name": check.name, "kind": check.kind.value, "rule": what}
    for key, value in (("phrases", list(check.phrases)), ("pattern", check.pattern),
                       ("question", check.question), ("speaker", check.speaker),
                       ("within_first_seconds", check.within_seconds)):
        if value:
            described[key] = value
    return described


def _tool(checks: list[CheckSpec]) -> dict[str, Any]:
    item = {"type": "object", "properties": {
        "name": {"type": "string", "enum": [c.name for c in checks]},
        "result": {"type": "string", "enum": list(ANSWERS)},
        "evidence": {"type": ["string", "null"],
                     "description": "Exact words from the transcript, or null."},
        "reason": {"type": "string"}},
        "required": ["name", "result", "evidence", "reason"]}
    return {"name": TOOL_NAME, "description": "Record the result of every quality check.",
            "input_schema": {"type": "object", "required": ["results"], "properties": {
                "results": {"type": "array", "items": item}}}}


def _answers(message: Any) -> dict[str, dict[str, Any]]:
    for block in message.content:
        if block.type == "tool_use" and block.name == TOOL_NAME:
            results = block.input.get("results") if isinstance(block.input, dict) else None
            if isinstance(results, list):
                return {str(r.get("name")): r for r in results if isinstance(r, dict)}
    raise errors.ProviderError(
        f"Claude answered without the check results (stop reason: {message.stop_reason})",
        retryable=False)


def _outcome(check: CheckSpec, answer: dict[str, Any] | None,
             transcript: Transcript) -> CheckOutcome:
    if answer is None or answer.get("result") not in ANSWERS:
        reason = ("Claude gave no result for this check" if answer is None else
                  f"Claude answered {answer.get('result')!r}, which is not a check result")
        return CheckOutcome(check.name, CheckResult.NOT_EVALUATED, None, reason)
    evidence = answer.get("evidence") or None
    reason = str(answer.get("reason") or "no reason given").strip()
    if evidence is not None and not quoted_in(str(evidence), transcript):
        reason += " (warning: the quoted evidence does not occur in the transcript)"
    if check.speaker and not transcript.separated:
        reason += (f" (judged on the whole call, not only the {check.speaker}: the transcript "
                   "does not separate speakers)")
    return CheckOutcome(check.name, CheckResult(answer["result"]),
                        None if evidence is None else str(evidence), reason)


def quoted_in(evidence: str, transcript: Transcript) -> bool:
    """Whether ``evidence`` occurs in the transcript, ignoring case, punctuation and spacing.
    Quotes may run across utterances, and Claude sometimes elides with "..." between parts."""
    text = f" {normalise(' '.join(u.text for u in transcript.utterances))} "
    parts = [normalise(p) for p in evidence.replace("\u2026", "...").split("...")]
    parts = [p for p in parts if p]
    return bool(parts) and all(f" {p} " in text for p in parts)


def _error_detail(body: object) -> str:
    """The message of Anthropic's ``{"type": "error", "error": {"type", "message"}}`` body."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return f"{inner.get('type', 'error')}: {inner['message']}"
    return str(body or "no details")[:200]
