"""Retry, process and reprocess: calls go back in the queue and earlier versions are kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import make_campaign
from fakes.pipeline_doubles import ScriptedProcessor, ScriptedTranscriber
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
)
from ingestd.storage.local import LocalStorage
from ingestd.views import call_view
from pipeline import queue
from pipeline.worker import Worker


@pytest.fixture
def store(any_db: Database) -> Database:
    """Each test runs on SQLite and on PostgreSQL (skipped without one)."""
    return any_db


@pytest.fixture
def setup(store: Database, settings: Settings, clock: ManualClock,
          corpus: Path) -> tuple[Worker, ScriptedProcessor, str]:
    campaign = make_campaign(store, clock, "acme")
    with store.session() as session:
        session.add(QualityCheck(campaign_id=campaign.id, name="greeting",
                                 kind=CheckKind.PHRASE.value, phrases=["thank you for calling"],
                                 created_at=clock.now()))
    audio = corpus / "bad" / "bad_silent_30s.wav"
    call = Call(campaign_id=campaign.id, source=CallSource.API.value, file_name=audio.name,
                queued=True, created_at=clock.now(), updated_at=clock.now())
    storage = LocalStorage(settings.storage_path)
    call.storage_key = storage.put_file(f"{campaign.id}/{call.id}/{audio.name}", audio).key
    with store.session() as session:
        session.add(call)
    processor = ScriptedProcessor(store, storage, settings, clock, "w1")
    processor.transcriber = ScriptedTranscriber(["hello there", "thank you for calling"])
    return Worker(store, storage, settings, clock, "w1", processor=processor), processor, call.id


def versions(store: Database, call_id: str) -> list[tuple[str, int, str]]:
    with store.session() as session:
        rows = session.exec(select(CallVersion).where(CallVersion.call_id == call_id)
                            .order_by(CallVersion.kind, CallVersion.version)).all()
        return [(r.kind, r.version, r.provider) for r in rows]


def load(store: Database, call_id: str) -> Call:
    with store.session() as session:
        return session.get(Call, call_id)


def test_reprocess_analysis_reuses_the_transcript_and_keeps_versions(
        store: Database, clock: ManualClock, setup: tuple[Worker, ScriptedProcessor, str]) -> None:
    worker, processor, call_id = setup
    assert asyncio.run(worker.run_once()) is True
    assert load(store, call_id).score == 0.0

    queue.reprocess(store, clock, call_id, queue.Redo.ANALYSIS)
    assert (load(store, call_id).status, load(store, call_id).stage) == ("PENDING", "analysis")
    assert asyncio.run(worker.run_once()) is True

    call = load(store, call_id)
    assert processor.transcriber.calls == 1  # the transcript was reused
    assert (call.status, call.transcript_version, call.analysis_version) == ("COMPLETED", 1, 2)
    assert versions(store, call_id) == [("analysis", 1, "rules"), ("analysis", 2, "rules"),
                                     ("transcript", 1, "scripted")]


def test_reprocess_transcription_adds_a_transcript_and_an_analysis(
        store: Database, clock: ManualClock, setup: tuple[Worker, ScriptedProcessor, str]) -> None:
    worker, processor, call_id = setup
    asyncio.run(worker.run_once())

    queue.reprocess(store, clock, call_id, queue.Redo.TRANSCRIPTION)
    asyncio.run(worker.run_once())

    call = load(store, call_id)
    assert processor.transcriber.calls == 2
    assert (call.transcript_version, call.analysis_version, call.score) == (2, 2, 100.0)
    with store.session() as session:
        view = call_view(session, session.get(Call, call_id))
    assert view["transcript"][0]["text"] == "thank you for calling"  # the current version
    assert view["checks"][0]["result"] == CheckResult.PASS.value
    assert [(v["kind"], v["version"]) for v in view["versions"]] == [
        ("analysis", 1), ("analysis", 2), ("transcript", 1), ("transcript", 2)]


def test_retry_resumes_a_failed_call_at_the_failed_stage(
        store: Database, clock: ManualClock, setup: tuple[Worker, ScriptedProcessor, str]) -> None:
    worker, processor, call_id = setup
    processor.broken_analysis = True
    asyncio.run(worker.run_once())
    call = load(store, call_id)
    assert (call.status, call.stage, call.error) == (
        "FAILED", "analysis", "Claude answered HTTP 400: bad request")

    processor.broken_analysis = False
    queue.retry(store, clock, call_id)
    asyncio.run(worker.run_once())

    call = load(store, call_id)
    assert (call.status, call.stage, call.error) == ("COMPLETED", None, None)
    assert processor.transcriber.calls == 1
    with pytest.raises(errors.Conflict, match="only a FAILED call can be retried"):
        queue.retry(store, clock, call_id)


def test_reprocess_refuses_queued_and_duplicate_calls(
        store: Database, clock: ManualClock, setup: tuple[Worker, ScriptedProcessor, str]) -> None:
    _, _, call_id = setup
    with pytest.raises(errors.Conflict, match="already queued"):
        queue.reprocess(store, clock, call_id, queue.Redo.TRANSCRIPTION)
    with pytest.raises(errors.NotFound):
        queue.reprocess(store, clock, "call_nope", queue.Redo.ANALYSIS)
    with store.session() as session:
        call = session.get(Call, call_id)
        call.status, call.duplicate_of = CallStatus.DUPLICATE.value, "call_original"
    with pytest.raises(errors.Conflict, match="reprocess the original"):
        queue.reprocess(store, clock, call_id, queue.Redo.ANALYSIS)


def test_process_campaign_queues_only_waiting_calls(store: Database, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, "manual", auto_process=False)
    with store.session() as session:
        for status, queued in (("PENDING", False), ("PENDING", False), ("PENDING", True),
                               ("COMPLETED", False), ("DUPLICATE", False)):
            session.add(Call(campaign_id=campaign.id, source="SFTP", file_name="a.mp3",
                             status=status, queued=queued, created_at=clock.now(),
                             updated_at=clock.now()))

    assert queue.process_campaign(store, clock, campaign.id) == 2
    assert queue.process_campaign(store, clock, campaign.id) == 0
    with store.session() as session:
        queued = session.exec(select(Call.status).where(Call.queued)).all()
    assert sorted(queued) == ["PENDING", "PENDING", "PENDING"]
