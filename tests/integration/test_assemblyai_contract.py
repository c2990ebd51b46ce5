"""Contract tests: the real assemblyai SDK and AssemblyaiTranscriber against a loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.loopback import Reply
from fakes.vendors import FakeAssemblyai, Said

from ingestd import errors
from ingestd.config import Settings
from pipeline.transcribe.assemblyai import AssemblyaiTranscriber
from pipeline.transcribe.base import Transcript, build_transcriber

STEREO = "20260115_JS001_outbound.mp3"
MONO = "20260120_KL003_outbound.mp3"
SAID = [Said(0.4, 3.1, "Thank you for calling Acme.", channel=0, speaker=0),
        Said(3.5, 5.0, "Hi, I have a question.", channel=1, speaker=1)]


@pytest.fixture
def fake() -> Iterator[FakeAssemblyai]:
    with FakeAssemblyai(SAID) as server:
        yield server


@pytest.fixture
def aai_settings(settings: Settings, fake: FakeAssemblyai,
                 monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "aai-test-key")
    settings.assemblyai.base_url = fake.url
    settings.assemblyai.timeout_seconds = 5
    return settings


def transcribe(settings: Settings, audio: Path, agent_channel: int = 0) -> Transcript:
    transcriber = build_transcriber("assemblyai", settings)
    assert isinstance(transcriber, AssemblyaiTranscriber)
    transcriber.poll_seconds = 0.01
    return asyncio.run(transcriber.transcribe(audio, agent_channel))


def test_stereo_call_uploads_polls_and_labels_by_channel(aai_settings: Settings,
                                                         fake: FakeAssemblyai,
                                                         corpus: Path) -> None:
    audio = corpus / "calls" / STEREO
    transcript = transcribe(aai_settings, audio)

    assert (transcript.provider, transcript.separated) == ("assemblyai", True)
    assert [(u.speaker.value, u.channel, u.start, u.end, u.text)
            for u in transcript.utterances] == [
        ("agent", 0, 0.4, 3.1, "Thank you for calling Acme."),
        ("customer", 1, 3.5, 5.0, "Hi, I have a question.")]
    upload, create, *polls = fake.requests
    assert (upload.method, upload.path, upload.body) == ("POST", "/v2/upload", audio.read_bytes())
    assert upload.headers["authorization"] == "aai-test-key"
    assert create.json()["multichannel"] is True
    assert "speaker_labels" not in create.json()
    assert create.json()["audio_url"] == f"{fake.url}/cdn/upload-1"
    assert [p.path for p in polls] == ["/v2/transcript/tr-1"] * 2  # processing, completed


def test_mono_call_asks_for_speaker_labels_and_keeps_them_unknown(aai_settings: Settings,
                                                                  fake: FakeAssemblyai,
                                                                  corpus: Path) -> None:
    transcript = transcribe(aai_settings, corpus / "calls" / MONO)

    assert transcript.separated is False
    assert [(u.speaker.value, u.channel) for u in transcript.utterances] == [
        ("unknown", None), ("unknown", None)]
    assert fake.created[0]["speaker_labels"] is True
    assert "multichannel" not in fake.created[0]


def test_a_transcript_in_error_fails_permanently_with_the_reason(
        aai_settings: Settings, corpus: Path) -> None:
    reason = "Transcoding failed. File does not appear to contain audio."
    with FakeAssemblyai(SAID, error=reason) as broken:
        aai_settings.assemblyai.base_url = broken.url
        with pytest.raises(errors.ProviderError) as caught:
            transcribe(aai_settings, corpus / "calls" / MONO)
    assert caught.value.retryable is False
    assert caught.value.message == f"AssemblyAI could not transcribe the recording: {reason}"


@pytest.mark.parametrize(("path", "status", "retryable"), [
    ("/v2/upload", 429, True),
    ("/v2/transcript", 500, True),
    ("/v2/transcript", 400, False),
    ("/v2/upload", 401, False),
])
def test_vendor_errors_are_translated_once(aai_settings: Settings, fake: FakeAssemblyai,
                                           corpus: Path, path: str, status: int,
                                           retryable: bool) -> None:
    fake.fail_next(Reply(status, {"error": f"scripted failure {status}"}), path_prefix=path)

    with pytest.raises(errors.ProviderError) as caught:
        transcribe(aai_settings, corpus / "calls" / MONO)

    assert caught.value.retryable is retryable
    assert f"AssemblyAI answered HTTP {status}" in caught.value.message
    assert f"scripted failure {status}" in caught.value.message


def test_a_silent_vendor_times_out_retryably(aai_settings: Settings, fake: FakeAssemblyai,
                                             corpus: Path) -> None:
    aai_settings.assemblyai.timeout_seconds = 0.5
    fake.fail_next(Reply(hang_seconds=5), path_prefix="/v2/transcript")

    with pytest.raises(errors.ProviderError) as caught:
        transcribe(aai_settings, corpus / "calls" / MONO)

    assert caught.value.retryable is True
    assert "did not" in caught.value.message and "0.5 s" in caught.value.message


def test_missing_api_key_is_a_permanent_error(settings: Settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    with pytest.raises(errors.ProviderError, match=r"^ASSEMBLYAI_API_KEY is not set$"):
        build_transcriber("assemblyai", settings)
