"""The pipeline worker end to end on a real database, real storage and real PocketSphinx."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_campaign
from sqlmodel import select

from ingestd import errors
from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import (
    Call,
    CallSource,
    CallStatus,
    CallVersion,
    CheckKind,
    CheckResult,
    QualityCheck,
    VersionKind,
)
from ingestd.storage.local import LocalStorage
from pipeline.stages import CallProcessor
from pipeline.transcribe.base import Transcript
from pipeline.worker import Worker

SHORT_CALL = "20260120_KL003_outbound.mp3"  # 27 s mono: the quickest real call to transcribe


def add_checks(db: Database, clock: ManualClock, campaign_id: str) -> None:
    with db.session() as session:
        session.add(QualityCheck(campaign_id=campaign_id, name="greeting",
                                 kind=CheckKind.PHRASE.value, phrases=["thank you for calling"],
                                 speaker="agent", within_seconds=15, created_at=clock.now()))
        session.add(QualityCheck(campaign_id=campaign_id, name="no_promises",
                                 kind=CheckKind.FORBIDDEN_PHRASE.value,
                                 phrases=["I guarantee", "you will definitely make money"],
                                 critical=True, created_at=clock.now()))


def queue_call(db: Database, settings: Settings, clock: ManualClock, campaign_id: str,
               audio: Path, **fields) -> str:
    call = Call(campaign_id=campaign_id, source=CallSource.API.value, file_name=audio.name,
                queued=True, created_at=clock.now(), updated_at=clock.now(), **fields)
    stored = LocalStorage(settings.storage_path).put_file(
        f"{campaign_id}/{call.id}/{audio.name}", audio)
    call.storage_key, call.size, call.sha256 = stored.key, stored.size, stored.sha256
    with db.session() as session:
        session.add(call)
    return call.id


def worker_for(db: Database, settings: Settings, clock: ManualClock, name: str = "w1",
               processor: CallProcessor | None = None) -> Worker:
    return Worker(db, LocalStorage(settings.storage_path), settings, clock, name,
                  processor=processor)


def load(db: Database, call_id: str) -> tuple[Call, list[CallVersion]]:
    with db.session() as session:
        call = session.get(Call, call_id)
        versions = session.exec(select(CallVersion).where(CallVersion.call_id == call_id)
                                .order_by(CallVersion.kind, CallVersion.version)).all()
        return call, list(versions)


def test_call_is_transcribed_analyzed_and_scored(any_db: Database, settings: Settings,
                                                 clock: ManualClock, corpus: Path) -> None:
    campaign = make_campaign(any_db, clock, "acme", flag_threshold=70)
    add_checks(any_db, clock, campaign.id)
    call_id = queue_call(any_db, settings, clock, campaign.id, corpus / "calls" / SHORT_CALL)
    worker = worker_for(any_db, settings, clock)

    assert asyncio.run(worker.run_once()) is True
    assert asyncio.run(worker.run_once()) is False  # nothing left to claim

    call, versions = load(any_db, call_id)
    assert call.status == CallStatus.COMPLETED
    assert call.completed_at is not None
    assert (call.claimed_by, call.lease_until) == (None, None)
    assert (call.transcript_version, call.analysis_version) == (1, 1)
    transcript, analysis = _by_kind(versions)
    assert transcript.provider == "pocketsphinx"
    assert transcript.data["separated"] is False
    assert len(transcript.data["utterances"]) == 6  # the six utterances of the truth file
    assert {u["speaker"] for u in transcript.data["utterances"]} == {"unknown"}
    assert analysis.provider == "rules"
    assert [c["name"] for c in analysis.data["checks"]] == ["greeting", "no_promises"]
    assert {c["result"] for c in analysis.data["checks"]} <= {r.value for r in CheckResult}
    assert call.score is not None and analysis.data["score"] == call.score
    assert analysis.data["flagged"] is call.flagged
    assert analysis.data["flag_reasons"] == call.flag_reasons


def test_silent_call_fails_its_phrase_checks_and_is_flagged(db: Database, settings: Settings,
                                                            clock: ManualClock,
                                                            corpus: Path) -> None:
    campaign = make_campaign(db, clock, "acme")
    add_checks(db, clock, campaign.id)
    call_id = queue_call(db, settings, clock, campaign.id, corpus / "bad" / "bad_silent_30s.wav")

    assert asyncio.run(worker_for(db, settings, clock).run_once()) is True

    call, versions = load(db, call_id)
    assert call.status == CallStatus.COMPLETED
    transcript, analysis = _by_kind(versions)
    assert transcript.data == {"utterances": [], "separated": False}
    assert [c["result"] for c in analysis.data["checks"]] == ["FAIL", "PASS"]
    assert call.score == 50.0
    assert call.flagged is True
    assert call.flag_reasons == ["score 50 below threshold 70"]


@pytest.mark.parametrize(("transcriber", "reason"), [
    ("whisper", "transcriber 'whisper' is not available in this build"),
    ("deepgram", "DEEPGRAM_API_KEY is not set"),
])
def test_unavailable_transcriber_fails_the_call_with_the_reason(any_db: Database,
                                                                settings: Settings,
                                                                clock: ManualClock,
                                                                corpus: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                transcriber: str,
                                                                reason: str) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    campaign = make_campaign(any_db, clock, "cloud", transcriber=transcriber)
    call_id = queue_call(any_db, settings, clock, campaign.id, corpus / "calls" / SHORT_CALL)

    assert asyncio.run(worker_for(any_db, settings, clock).run_once()) is True

    call, versions = load(any_db, call_id)
    assert call.status == CallStatus.FAILED
    assert call.stage == "transcription"
    assert call.error == reason
    assert (call.claimed_by, call.lease_until, call.score) == (None, None, None)
    assert versions == []


def test_expired_lease_is_taken_over_and_completed(any_db: Database, settings: Settings,
                                                   clock: ManualClock, corpus: Path) -> None:
    campaign = make_campaign(any_db, clock, "acme")
    add_checks(any_db, clock, campaign.id)
    silent = corpus / "bad" / "bad_silent_30s.wav"
    call_id = queue_call(any_db, settings, clock, campaign.id, silent,
                         status=CallStatus.TRANSCRIBING.value, claimed_by="dead-worker",
                         lease_until=clock.now() + timedelta(seconds=60))
    worker = worker_for(any_db, settings, clock, "w2")

    assert asyncio.run(worker.run_once()) is False  # the dead worker's lease still runs
    clock.advance(61)
    assert asyncio.run(worker.run_once()) is True

    call, versions = load(any_db, call_id)
    assert call.status == CallStatus.COMPLETED
    assert (call.claimed_by, call.lease_until) == (None, None)
    assert [v.kind for v in versions] == ["analysis", "transcript"]


def test_missing_recording_fails_with_a_reason(db: Database, settings: Settings,
                                               clock: ManualClock, corpus: Path,
                                               tmp_path: Path) -> None:
    campaign = make_campaign(db, clock, "acme")
    audio = tmp_path / SHORT_CALL
    shutil.copy(corpus / "calls" / SHORT_CALL, audio)
    call_id = queue_call(db, settings, clock, campaign.id, audio)
    with db.session() as session:
        LocalStorage(settings.storage_path).delete(session.get(Call, call_id).storage_key)

    asyncio.run(worker_for(db, settings, clock).run_once())

    call, _ = load(db, call_id)
    assert call.status == CallStatus.FAILED
    assert call.stage == "transcription"
    assert "is missing" in call.error


class OutageTranscriber:
    """A transcriber whose vendor is down: every call ends in a retryable error."""

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        raise errors.ProviderError("transcription service unavailable (HTTP 503)",
                                   retryable=True)


class OutageProcessor(CallProcessor):
    def transcriber_for(self, name: str) -> OutageTranscriber:
        return OutageTranscriber()


def test_retryable_errors_back_off_then_fail(db: Database, settings: Settings,
                                             clock: ManualClock, corpus: Path) -> None:
    campaign = make_campaign(db, clock, "acme")
    call_id = queue_call(db, settings, clock, campaign.id, corpus / "calls" / SHORT_CALL)
    storage = LocalStorage(settings.storage_path)
    worker = Worker(db, storage, settings, clock, "w1",
                    processor=OutageProcessor(db, storage, settings, clock, "w1"))

    for attempt in range(1, settings.pipeline.max_attempts):
        assert asyncio.run(worker.run_once()) is True
        call, _ = load(db, call_id)
        assert (call.status, call.attempts, call.stage) == ("PENDING", attempt, "transcription")
        assert call.next_attempt_at > clock.now()
        assert call.claimed_by is None
        assert asyncio.run(worker.run_once()) is False  # not before the backoff ran out
        clock.advance(3600)

    assert asyncio.run(worker.run_once()) is True
    call, _ = load(db, call_id)
    assert call.status == CallStatus.FAILED
    assert call.error == ("transcription service unavailable (HTTP 503) "
                          f"(gave up after {settings.pipeline.max_attempts} attempts)")


class StuckTranscriber:
    """A transcription that never ends on its own, to interrupt."""

    def __init__(self, started: asyncio.Event) -> None:
        self.started = started

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class StuckProcessor(CallProcessor):
    started: asyncio.Event

    def transcriber_for(self, name: str) -> StuckTranscriber:
        return StuckTranscriber(self.started)


def test_stop_releases_the_call_for_another_worker(db: Database, settings: Settings,
                                                   clock: ManualClock, corpus: Path) -> None:
    campaign = make_campaign(db, clock, "acme")
    call_id = queue_call(db, settings, clock, campaign.id, corpus / "calls" / SHORT_CALL)
    storage = LocalStorage(settings.storage_path)
    processor = StuckProcessor(db, storage, settings, clock, "w1")
    worker = Worker(db, storage, settings, clock, "w1", processor=processor)

    async def scenario() -> None:
        processor.started = asyncio.Event()
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(processor.started.wait(), timeout=30)
        call, _ = load(db, call_id)
        assert (call.status, call.claimed_by) == ("TRANSCRIBING", "w1")
        stop.set()
        await asyncio.wait_for(running, timeout=30)

    asyncio.run(scenario())
    call, _ = load(db, call_id)
    assert (call.status, call.claimed_by, call.lease_until) == ("PENDING", None, None)
    assert db.claim_calls("w2", clock.now(), 60) == [call_id]  # at once, no lease to wait out


def test_idle_worker_stops_promptly(db: Database, settings: Settings,
                                    clock: ManualClock) -> None:
    worker = worker_for(db, settings, clock)

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.05)
        worker.poke()
        stop.set()
        await asyncio.wait_for(running, timeout=5)

    asyncio.run(scenario())


def _by_kind(versions: list[CallVersion]) -> tuple[CallVersion, CallVersion]:
    kinds = {v.kind: v for v in versions}
    assert len(versions) == 2
    return kinds[VersionKind.TRANSCRIPT.value], kinds[VersionKind.ANALYSIS.value]


@pytest.fixture(autouse=True)
def _fast_polls(settings: Settings) -> None:
    settings.pipeline.poll_seconds = 0.05
