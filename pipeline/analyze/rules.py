"""The offline default analyzer: phrase, forbidden-phrase and regex checks on the transcript text.

Phrases match whole words, tolerant of case, punctuation and spacing: both sides are normalised
(lowercase, apostrophes dropped, other punctuation turned into spaces, spaces collapsed), so
"Thank you for calling!" matches "thank you  for calling". A phrase counts only inside one
utterance. ``within_seconds`` limits a check to utterances that start that early; ``speaker`` to
that speaker's utterances — unless the transcript has no speaker separation, in which case the
whole call is searched and the reason says so. ``llm`` checks need a language model: this
analyzer reports them ``NOT_EVALUATED``, never passed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from ingestd.models import CheckKind, CheckResult
from pipeline.analyze.base import CheckOutcome, CheckSpec
from pipeline.transcribe.base import Transcript, Utterance

_APOSTROPHES = re.compile(r"['\u2019`]")
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lowercase words separated by single spaces, without punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", _APOSTROPHES.sub("", text)).split())


class RulesAnalyzer:
    """Evaluates ``phrase``, ``forbidden_phrase`` and ``regex`` checks (see module docstring)."""

    provider = "rules"

    async def analyze(self, transcript: Transcript,
                      checks: list[CheckSpec]) -> list[CheckOutcome]:
        """Pure and quick: evaluated inline, no thread needed."""
        return [evaluate(transcript, check) for check in checks]


def evaluate(transcript: Transcript, check: CheckSpec) -> CheckOutcome:
    """The outcome of one check on ``transcript``."""
    evaluator = _EVALUATORS.get(check.kind)
    if evaluator is None:
        return _outcome(check, CheckResult.NOT_EVALUATED, None,
                        f"the rules analyzer cannot evaluate {check.kind.value} checks")
    utterances, scope_note = _in_scope(transcript, check)
    result, evidence, reason = evaluator(check, utterances)
    return _outcome(check, result, evidence, reason + scope_note)


def _in_scope(transcript: Transcript, check: CheckSpec) -> tuple[list[Utterance], str]:
    """The utterances the check looks at, and where it looked, for the reason."""
    utterances = list(transcript.utterances)
    where = "the whole call"
    if check.speaker and transcript.separated:
        utterances = [u for u in utterances if u.speaker == check.speaker]
        where = f"the {check.speaker}'s utterances"
    elif check.speaker:
        where = (f"the whole call, not only the {check.speaker}: the transcript does not "
                 f"separate speakers")
    if check.within_seconds is not None:
        utterances = [u for u in utterances if u.start <= check.within_seconds]
        where += f", starting in the first {check.within_seconds:g} s"
    return utterances, f" (searched {where})"


def _phrase(check: CheckSpec, utterances: list[Utterance]) -> tuple[CheckResult, str | None, str]:
    if not check.phrases:
        return CheckResult.NOT_EVALUATED, None, "the check names no phrase"
    found = _first_phrase(check.phrases, utterances)
    if found is None:
        return CheckResult.FAIL, None, f"none of {_quoted(check.phrases)} was said"
    phrase, utterance = found
    return CheckResult.PASS, utterance.text, f"\"{phrase}\" said at {utterance.start:.1f} s"


def _forbidden(check: CheckSpec,
               utterances: list[Utterance]) -> tuple[CheckResult, str | None, str]:
    if not check.phrases:
        return CheckResult.NOT_EVALUATED, None, "the check names no phrase"
    found = _first_phrase(check.phrases, utterances)
    if found is None:
        return CheckResult.PASS, None, f"none of {_quoted(check.phrases)} was said"
    phrase, utterance = found
    return (CheckResult.FAIL, utterance.text,
            f"forbidden phrase \"{phrase}\" said at {utterance.start:.1f} s")


def _regex(check: CheckSpec, utterances: list[Utterance]) -> tuple[CheckResult, str | None, str]:
    if not check.pattern:
        return CheckResult.NOT_EVALUATED, None, "the check has no pattern"
    try:
        pattern = re.compile(check.pattern, re.IGNORECASE)
    except re.error as exc:
        return CheckResult.NOT_EVALUATED, None, f"the pattern is not a valid regex: {exc}"
    for utterance in utterances:
        if pattern.search(utterance.text):
            return (CheckResult.PASS, utterance.text,
                    f"pattern /{check.pattern}/ matched at {utterance.start:.1f} s")
    return CheckResult.FAIL, None, f"pattern /{check.pattern}/ did not match"


def _first_phrase(phrases: tuple[str, ...],
                  utterances: list[Utterance]) -> tuple[str, Utterance] | None:
    """The first utterance (by time) containing any of ``phrases`` as whole words."""
    wanted = [(phrase, f" {normalise(phrase)} ") for phrase in phrases if normalise(phrase)]
    for utterance in utterances:
        text = f" {normalise(utterance.text)} "
        for phrase, needle in wanted:
            if needle in text:
                return phrase, utterance
    return None


def _quoted(phrases: tuple[str, ...]) -> str:
    return ", ".join(f"\"{phrase}\"" for phrase in phrases)


def _outcome(check: CheckSpec, result: CheckResult, evidence: str | None,
             reason: str) -> CheckOutcome:
    return CheckOutcome(name=check.name, result=result, evidence=evidence, reason=reason)


_Evaluator = Callable[[CheckSpec, list[Utterance]], tuple[CheckResult, str | None, str]]
_EVALUATORS: dict[CheckKind, _Evaluator] = {
    CheckKind.PHRASE: _phrase,
    CheckKind.FORBIDDEN_PHRASE: _forbidden,
    CheckKind.REGEX: _regex,
}
