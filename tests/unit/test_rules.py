"""The rules analyzer, table-driven on small hand-made transcripts."""

from __future__ import annotations

import asyncio

import pytest

from ingestd.models import CheckKind, CheckResult, Speaker
from pipeline.analyze.base import CheckSpec, build_analyzer
from pipeline.analyze.rules import RulesAnalyzer, evaluate, normalise
from pipeline.transcribe.base import Transcript, Utterance

AGENT, CUSTOMER, UNKNOWN = Speaker.AGENT, Speaker.CUSTOMER, Speaker.UNKNOWN


def transcript(*lines: tuple[Speaker, float, str], separated: bool = True) -> Transcript:
    utterances = tuple(
        Utterance(speaker=speaker, channel=None if not separated else int(speaker != AGENT),
                  start=start, end=start + 2.0, text=text)
        for speaker, start, text in lines)
    return Transcript(utterances=utterances, separated=separated, provider="test")


CALL = transcript(
    (AGENT, 0.5, "Good morning! THANK you,   for calling Northwind."),
    (CUSTOMER, 3.0, "Hi. I guarantee I paid; my reference is AB-1234."),
    (AGENT, 20.0, "Is there anything else I can help you with?"),
    (AGENT, 40.0, "Lovely, that's all sorted."),
)
MONO = transcript(
    (UNKNOWN, 0.5, "Thank you for calling."),
    (UNKNOWN, 3.0, "I guarantee I paid."),
    separated=False,
)
EMPTY = transcript()


def phrase(*phrases: str, **fields) -> CheckSpec:
    return CheckSpec(name="c", kind=CheckKind.PHRASE, phrases=phrases, **fields)


def forbidden(*phrases: str, **fields) -> CheckSpec:
    return CheckSpec(name="c", kind=CheckKind.FORBIDDEN_PHRASE, phrases=phrases, **fields)


def regex(pattern: str, **fields) -> CheckSpec:
    return CheckSpec(name="c", kind=CheckKind.REGEX, pattern=pattern, **fields)


PASS, FAIL, NOT_EVALUATED = CheckResult.PASS, CheckResult.FAIL, CheckResult.NOT_EVALUATED

CASES = [
    # (id, transcript, check, result, evidence or None, words expected in the reason)
    ("phrase any-of, case and punctuation", CALL, phrase("nope", "thank you for calling"),
     PASS, CALL.utterances[0].text, "thank you for calling"),
    ("phrase by the right speaker", CALL, phrase("thank you for calling", speaker="agent"),
     PASS, CALL.utterances[0].text, "agent's utterances"),
    ("phrase by the wrong speaker", CALL, phrase("thank you for calling", speaker="customer"),
     FAIL, None, "none of"),
    ("phrase inside the time limit", CALL, phrase("anything else", within_seconds=30),
     PASS, CALL.utterances[2].text, "first 30 s"),
    ("phrase too late", CALL, phrase("anything else", within_seconds=15),
     FAIL, None, "first 15 s"),
    ("phrase whole words only", CALL, phrase("thank you for call"), FAIL, None, "none of"),
    ("phrase apostrophe and spacing", CALL, phrase("THAT'S ALL  sorted"),
     PASS, CALL.utterances[3].text, "said at 40.0 s"),
    ("phrase on silence", EMPTY, phrase("thank you for calling"), FAIL, None, "none of"),
    ("phrase with no phrases", CALL, phrase(), NOT_EVALUATED, None, "no phrase"),
    ("forbidden said by anyone", CALL, forbidden("I guarantee"),
     FAIL, CALL.utterances[1].text, "forbidden phrase"),
    ("forbidden said only by another speaker", CALL, forbidden("I guarantee", speaker="agent"),
     PASS, None, "none of"),
    ("forbidden never said", CALL, forbidden("definitely make money"), PASS, None, "none of"),
    ("regex matches, case-insensitive", CALL, regex(r"ab-\d{4}"),
     PASS, CALL.utterances[1].text, "matched"),
    ("regex restricted to the agent", CALL, regex(r"ab-\d{4}", speaker="agent"),
     FAIL, None, "did not match"),
    ("regex invalid", CALL, regex(r"(unclosed"), NOT_EVALUATED, None, "not a valid regex"),
    ("llm is never evaluated", CALL,
     CheckSpec(name="c", kind=CheckKind.LLM, question="Was the agent polite?"),
     NOT_EVALUATED, None, "cannot evaluate llm checks"),
    ("unseparated: speaker check searches the whole call", MONO,
     phrase("thank you for calling", speaker="customer"),
     PASS, MONO.utterances[0].text, "does not separate speakers"),
    ("unseparated: forbidden by agent still found", MONO, forbidden("i guarantee", speaker="agent"),
     FAIL, MONO.utterances[1].text, "does not separate speakers"),
]


@pytest.mark.parametrize(("name", "call", "check", "result", "evidence", "reason_words"), CASES,
                         ids=[case[0] for case in CASES])
def test_rules(name, call, check, result, evidence, reason_words) -> None:
    outcome = evaluate(call, check)
    assert outcome.result is result
    assert outcome.evidence == evidence
    assert reason_words in outcome.reason


@pytest.mark.parametrize(("raw", "clean"), [
    ("Thank you,  for CALLING!", "thank you for calling"),
    ("That's   it… twelve-month", "thats it twelve month"),
    ("  Zoë  Lefèvre ", "zoë lefèvre"),
])
def test_normalise(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


def test_analyze_keeps_check_order_and_names() -> None:
    checks = [CheckSpec(name="b", kind=CheckKind.LLM), phrase("thank you for calling")]
    outcomes = asyncio.run(RulesAnalyzer().analyze(CALL, checks))
    assert [(o.name, o.result) for o in outcomes] == [("b", NOT_EVALUATED), ("c", PASS)]


def test_unknown_analyzer_is_a_clear_permanent_error(settings) -> None:
    from ingestd.errors import ProviderError

    assert isinstance(build_analyzer("rules", settings), RulesAnalyzer)
    with pytest.raises(ProviderError, match="analyzer 'gpt' is not available") as caught:
        build_analyzer("gpt", settings)
    assert caught.value.retryable is False
