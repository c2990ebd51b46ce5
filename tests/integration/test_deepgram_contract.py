"""Contract tests: the real deepgram-sdk and DeepgramTranscriber against a loopback Deepgram."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.loopback import Reply
from fakes.vendors import FakeDeepgram, Said

from ingestd import errors
from ingestd.config import Settings
from pipeline.transcribe.base import Transcript, build_transcriber

STEREO = "20260115_JS001_outbound.mp3"
MONO = "20260120_KL003_outbound.mp3"
SAID = [Said(0.4, 3.1, "Thank you for calling Acme, this is John.", channel=0, speaker=0),
        Said(3.5, 5.0, "Hi, I have a question.", channel=1, speaker=1),
        Said(5.2, 7.9, "Sure, how can I help?", channel=0, speaker=0)]


@pytest.fixture
def fake() -> Iterator[FakeDeepgram]:
    with FakeDeepgram(SAID) as server:
        yield server


@pytest.fixture
def deepgram_settings(settings: Settings, fake: FakeDeepgram,
                      monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-test-key")
    settings.deepgram.base_url = fake.url
    settings.deepgram.timeout_seconds = 5
    return settings


def transcribe(settings: Settings, audio: Path, agent_channel: int = 0,
               hints: tuple[str, ...] = ()) -> Transcript:
    transcriber = build_transcriber("deepgram", settings)
    return asyncio.run(transcriber.transcribe(audio, agent_channel, hints))


def test_stereo_call_is_sent_multichannel_and_labelled_by_channel(
        deepgram_settings: Settings, fake: FakeDeepgram, corpus: Path) -> None:
    audio = corpus / "calls" / STEREO
    transcript = transcribe(deepgram_settings, audio, hints=("thank you for calling",))

    assert transcript.provider == "deepgram"
    assert transcript.separated is True
    assert [(u.speaker.value, u.channel, u.text) for u in transcript.utterances] == [
        ("agent", 0, "Thank you for calling Acme, this is John."),
        ("customer", 1, "Hi, I have a question."),
        ("agent", 0, "Sure, how can I help?")]
    assert (transcript.utterances[0].start, transcript.utterances[0].end) == (0.4, 3.1)
    [request] = fake.requests
    assert request.headers["authorization"] == "Token dg-test-key"
    assert request.body == audio.read_bytes()
    assert request.query["multichannel"] == ["true"]
    assert request.query["utterances"] == ["true"]
    assert request.query["model"] == ["nova-3"]
    assert request.query["keyterm"] == ["thank you for calling"]
    assert "diarize" not in request.query or request.query["diarize"] == ["false"]


def test_agent_channel_setting_swaps_the_speakers(deepgram_settings: Settings,
                                                  corpus: Path) -> None:
    transcript = transcribe(deepgram_settings, corpus / "calls" / STEREO, agent_channel=1)
    assert [u.speaker.value for u in transcript.utterances] == ["customer", "agent", "customer"]


def test_mono_call_is_diarized_but_speakers_stay_unknown(deepgram_settings: Settings,
                                                         fake: FakeDeepgram,
                                                         corpus: Path) -> None:
    transcript = transcribe(deepgram_settings, corpus / "calls" / MONO)

    assert transcript.separated is False
    assert {(u.speaker.value, u.channel) for u in transcript.utterances} == {("unknown", None)}
    assert len(transcript.utterances) == 3  # Deepgram's turns are kept
    assert fake.requests[0].query["diarize"] == ["true"]
    assert fake.requests[0].query["multichannel"] == ["false"]


@pytest.mark.parametrize(("status", "body", "retryable", "words"), [
    (429, {"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests."}, True,
     "HTTP 429: Too many requests."),
    (500, {"err_code": "INTERNAL_SERVER_ERROR", "err_msg": "Something went wrong."}, True,
     "HTTP 500: Something went wrong."),
    (400, {"err_code": "Bad Request", "err_msg": "Bad Request: failed to process audio: "
                                                 "corrupt or unsupported data"}, False,
     "HTTP 400: Bad Request: failed to process audio"),
    (401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, False,
     "HTTP 401: Invalid credentials."),
])
def test_vendor_errors_are_translated_once(deepgram_settings: Settings, fake: FakeDeepgram,
                                           corpus: Path, status: int, body: dict,
                                           retryable: bool, words: str) -> None:
    fake.fail_next(Reply(status, body))

    with pytest.raises(errors.ProviderError) as caught:
        transcribe(deepgram_settings, corpus / "calls" / MONO)

    assert caught.value.retryable is retryable
    assert words in caught.value.message
    assert len(fake.requests) == 1  # the SDK's own retries are off: the pipeline retries


def test_a_silent_vendor_times_out_retryably(deepgram_settings: Settings, fake: FakeDeepgram,
                                             corpus: Path) -> None:
    deepgram_settings.deepgram.timeout_seconds = 0.5
    fake.fail_next(Reply(hang_seconds=5))

    with pytest.raises(errors.ProviderError) as caught:
        transcribe(deepgram_settings, corpus / "calls" / MONO)

    assert caught.value.retryable is True
    assert caught.value.message == "Deepgram did not answer within 0.5 s"


def test_missing_api_key_is_a_permanent_error(settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(errors.ProviderError) as caught:
        build_transcriber("deepgram", settings)
    assert (caught.value.message, caught.value.retryable) == ("DEEPGRAM_API_KEY is not set",
                                                              False)
