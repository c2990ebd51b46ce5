"""Contract tests: the real anthropic SDK and AnthropicAnalyzer against a loopback Messages API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fakes.loopback import Reply
from fakes.vendors import FakeAnthropic, error_body

from ingestd import errors
from ingestd.config import Settings
from ingestd.models import CheckKind, CheckResult, Speaker
from pipeline.analyze.base import CheckOutcome, CheckSpec, build_analyzer
from pipeline.transcribe.base import Transcript, Utterance

TRANSCRIPT = Transcript(utterances=(
    Utterance(Speaker.AGENT, 0, 0.5, 3.0, "Thank you for calling Acme, this is John."),
    Utterance(Speaker.CUSTOMER, 1, 3.5, 6.0, "Can you promise I'll make money?"),
    Utterance(Speaker.AGENT, 0, 6.5, 9.0, "I can't promise returns, but I can explain."),
), separated=True, provider="deepgram")
CHECKS = [
    CheckSpec("greeting", CheckKind.PHRASE, phrases=("thank you for calling",), speaker="agent",
              within_seconds=15),
    CheckSpec("no_promises", CheckKind.FORBIDDEN_PHRASE, phrases=("I guarantee",),
              critical=True),
    CheckSpec("empathy", CheckKind.LLM, question="Did the agent acknowledge the concern?"),
]
ANSWERS = [
    {"name": "greeting", "result": "PASS", "evidence": "thank you for calling Acme",
     "reason": "The agent greets the caller at 0.5 s."},
    {"name": "no_promises", "result": "PASS", "evidence": None,
     "reason": "No guarantee is given."},
    {"name": "empathy", "result": "FAIL", "evidence": "I will always be here for you",
     "reason": "The agent moves on without acknowledging."},
]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(ANSWERS) as server:
        yield server


@pytest.fixture
def claude_settings(settings: Settings, fake: FakeAnthropic,
                    monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    settings.anthropic.base_url = fake.url
    settings.anthropic.timeout_seconds = 5
    settings.anthropic.model = "claude-sonnet-4-6"  # the SDK warns on deprecated models
    return settings


def analyze(settings: Settings, transcript: Transcript = TRANSCRIPT) -> list[CheckOutcome]:
    return asyncio.run(build_analyzer("anthropic", settings).analyze(transcript, CHECKS))


def test_all_checks_go_in_one_forced_tool_call(claude_settings: Settings,
                                               fake: FakeAnthropic) -> None:
    outcomes = analyze(claude_settings)

    [request] = fake.requests
    body = request.json()
    assert "sk-ant-test" in (request.headers.get("x-api-key"), request.headers.get(
        "authorization", "").removeprefix("Bearer "))
    assert body["model"] == claude_settings.anthropic.model
    assert body["tool_choice"] == {"type": "tool", "name": "record_check_results"}
    schema = body["tools"][0]["input_schema"]["properties"]["results"]["items"]
    assert schema["properties"]["name"]["enum"] == ["greeting", "no_promises", "empathy"]
    assert schema["properties"]["result"]["enum"] == ["PASS", "FAIL", "NOT_APPLICABLE"]
    prompt = body["messages"][0]["content"]
    assert "[0.5s] agent: Thank you for calling Acme, this is John." in prompt
    assert "Did the agent acknowledge the concern?" in prompt
    assert [o.name for o in outcomes] == ["greeting", "no_promises", "empathy"]
    assert [o.result for o in outcomes] == [CheckResult.PASS, CheckResult.PASS,
                                            CheckResult.FAIL]


def test_evidence_is_verified_against_the_transcript(claude_settings: Settings) -> None:
    greeting, _, empathy = analyze(claude_settings)

    assert greeting.evidence == "thank you for calling Acme"
    assert "warning" not in greeting.reason
    assert empathy.evidence == "I will always be here for you"
    assert empathy.reason.endswith(
        "(warning: the quoted evidence does not occur in the transcript)")


def test_left_out_or_invalid_answers_are_not_evaluated(claude_settings: Settings,
                                                       fake: FakeAnthropic) -> None:
    fake.results = [{"name": "greeting", "result": "MAYBE", "evidence": None, "reason": "?"}]

    outcomes = analyze(claude_settings)

    assert [o.result for o in outcomes] == [CheckResult.NOT_EVALUATED] * 3
    assert outcomes[0].reason == "Claude answered 'MAYBE', which is not a check result"
    assert outcomes[1].reason == "Claude gave no result for this check"


def test_unseparated_transcript_says_speaker_checks_ran_on_the_whole_call(
        claude_settings: Settings, fake: FakeAnthropic) -> None:
    mono = Transcript(tuple(Utterance(Speaker.UNKNOWN, None, u.start, u.end, u.text)
                            for u in TRANSCRIPT.utterances), separated=False, provider="x")
    greeting, no_promises, _ = analyze(claude_settings, mono)

    assert "judged on the whole call, not only the agent" in greeting.reason
    assert "whole call" not in no_promises.reason
    assert "Speakers could not be told apart" in fake.requests[0].json()["messages"][0]["content"]


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (429, "rate_limit_error", True),
    (500, "api_error", True),
    (529, "overloaded_error", True),
    (400, "invalid_request_error", False),
    (401, "authentication_error", False),
])
def test_vendor_errors_are_translated_once(claude_settings: Settings, fake: FakeAnthropic,
                                           status: int, kind: str, retryable: bool) -> None:
    fake.fail_next(Reply(status, error_body(kind, f"scripted {kind}")))

    with pytest.raises(errors.ProviderError) as caught:
        analyze(claude_settings)

    assert caught.value.retryable is retryable
    assert caught.value.message == f"Claude answered HTTP {status}: {kind}: scripted {kind}"
    assert len(fake.requests) == 1  # no SDK retries: the pipeline owns them


def test_a_silent_vendor_times_out_retryably(claude_settings: Settings,
                                             fake: FakeAnthropic) -> None:
    claude_settings.anthropic.timeout_seconds = 0.5
    fake.fail_next(Reply(hang_seconds=5))

    with pytest.raises(errors.ProviderError) as caught:
        analyze(claude_settings)

    assert (caught.value.message, caught.value.retryable) == (
        "Claude did not answer within 0.5 s", True)


def test_missing_api_key_is_a_permanent_error(settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(errors.ProviderError, match=r"^ANTHROPIC_API_KEY is not set$"):
        build_analyzer("anthropic", settings)
