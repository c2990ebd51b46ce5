"""Webhooks end to end on a database and a loopback receiver: outbox, signature, retry, log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_campaign
from fakes.loopback import Reply
from fakes.pipeline_doubles import ScriptedProcessor, ScriptedTranscriber
from fakes.vendors import WebhookReceiver
from sqlmodel import select

from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import (
    Batch,
    BatchStatus,
    Call,
    CallSource,
    Campaign,
    Webhook,
    WebhookDelivery,
)
from ingestd.storage.local import LocalStorage
from pipeline import webhooks
from pipeline.delivery import WebhookSender
from pipeline.worker import Worker

SECRET = "s3cret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def store(any_db: Database) -> Database:
    """Each test runs on SQLite and on PostgreSQL (skipped without one)."""
    return any_db


@pytest.fixture
def campaign(store: Database, clock: ManualClock) -> Campaign:
    return make_campaign(store, clock, "acme")


def add_hook(store: Database, clock: ManualClock, campaign: Campaign, url: str,
             events: list[str] | None = None) -> str:
    hook = Webhook(campaign_id=campaign.id, url=url, secret=SECRET, events=events or [],
                   created_at=clock.now())
    with store.session() as session:
        session.add(hook)
    return hook.id


def process_one_call(store: Database, settings: Settings, clock: ManualClock, campaign: Campaign,
                     corpus: Path, broken: bool = False) -> str:
    audio = corpus / "bad" / "bad_silent_30s.wav"
    call = Call(campaign_id=campaign.id, source=CallSource.API.value, file_name=audio.name,
                queued=True, created_at=clock.now(), updated_at=clock.now())
    storage = LocalStorage(settings.storage_path)
    call.storage_key = storage.put_file(f"{campaign.id}/{call.id}/x.wav", audio).key
    with store.session() as session:
        session.add(call)
    processor = ScriptedProcessor(store, storage, settings, clock, "w1")
    processor.transcriber = ScriptedTranscriber(["thank you for calling"])
    processor.broken_analysis = broken
    asyncio.run(Worker(store, storage, settings, clock, "w1", processor=processor).run_once())
    return call.id


def deliveries(store: Database) -> list[WebhookDelivery]:
    with store.session() as session:
        return list(session.exec(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def test_completed_call_is_posted_signed(store: Database, settings: Settings, clock: ManualClock,
                                         campaign: Campaign, receiver: WebhookReceiver,
                                         corpus: Path) -> None:
    hook_id = add_hook(store, clock, campaign, receiver.url + "/hooks/ingestd")
    call_id = process_one_call(store, settings, clock, campaign, corpus)
    [queued] = deliveries(store)
    assert (queued.event, queued.status) == ("call.completed", "PENDING")

    sender = WebhookSender(store, settings, clock, "s1")
    assert asyncio.run(sender.run_once()) == 1

    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/ingestd")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-ingestd-event"] == "call.completed"
    assert request.headers["x-ingestd-delivery"] == queued.id
    assert webhooks.verify(SECRET, request.body, request.headers["x-ingestd-signature"])
    assert not webhooks.verify("other", request.body, request.headers["x-ingestd-signature"])
    body = json.loads(request.body)
    assert (body["id"], body["event"]) == (queued.id, "call.completed")
    assert (body["data"]["id"], body["data"]["status"]) == (call_id, "COMPLETED")
    assert body["data"]["checks"] == []  # the campaign has no checks
    [done] = deliveries(store)
    assert (done.webhook_id, done.status, done.attempts) == (hook_id, "DELIVERED", 1)
    assert (done.last_status_code, done.last_error, done.claimed_by) == (200, None, None)


def test_failed_call_event_and_event_filter(store: Database, settings: Settings,
                                            clock: ManualClock, campaign: Campaign,
                                            receiver: WebhookReceiver, corpus: Path) -> None:
    add_hook(store, clock, campaign, receiver.url, events=["call.failed"])
    process_one_call(store, settings, clock, campaign, corpus)  # completed: not subscribed
    process_one_call(store, settings, clock, campaign, corpus, broken=True)

    assert [d.event for d in deliveries(store)] == ["call.failed"]
    asyncio.run(WebhookSender(store, settings, clock, "s1").run_once())
    body = json.loads(receiver.requests[0].body)
    assert body["data"]["error"] == "Claude answered HTTP 400: bad request"
    assert body["data"]["stage"] == "analysis"


def test_errors_are_retried_with_backoff_then_given_up(store: Database, settings: Settings,
                                                        clock: ManualClock, campaign: Campaign,
                                                        receiver: WebhookReceiver,
                                                        corpus: Path) -> None:
    settings.webhooks.max_attempts = 3
    settings.webhooks.timeout_seconds = 0.3
    add_hook(store, clock, campaign, receiver.url)
    process_one_call(store, settings, clock, campaign, corpus)
    sender = WebhookSender(store, settings, clock, "s1")
    receiver.fail_next(Reply(500, "boom"))
    receiver.fail_next(Reply(hang_seconds=3))
    receiver.fail_next(Reply(503, "still down"))

    assert asyncio.run(sender.run_once()) == 1
    [first] = deliveries(store)
    assert (first.status, first.attempts, first.last_status_code) == ("PENDING", 1, 500)
    assert first.last_error == "HTTP 500: boom"
    assert first.next_attempt_at > clock.now()
    assert asyncio.run(sender.run_once()) == 0  # not before its backoff ran out

    clock.advance(3600)
    asyncio.run(sender.run_once())
    [second] = deliveries(store)
    assert (second.attempts, second.last_status_code) == (2, None)
    assert second.last_error == "no answer within 0.3 s"

    clock.advance(3600)
    asyncio.run(sender.run_once())
    [last] = deliveries(store)
    assert (last.status, last.attempts, last.last_status_code) == ("FAILED", 3, 503)
    assert last.next_attempt_at is None
    clock.advance(3600)
    assert asyncio.run(sender.run_once()) == 0
    assert len(receiver.requests) == 3


def test_closed_batches_are_announced_once(store: Database, settings: Settings,
                                           clock: ManualClock, campaign: Campaign,
                                           receiver: WebhookReceiver) -> None:
    add_hook(store, clock, campaign, receiver.url)
    clock.advance(1)
    batch = Batch(campaign_id=campaign.id, scope="acme/2026-01-15",
                  status=BatchStatus.INCOMPLETE.value, reason="1 file missing",
                  missing=["b.mp3"], deadline=clock.now(), created_at=clock.now(),
                  updated_at=clock.now(), closed_at=clock.now())
    with store.session() as session:
        session.add(batch)
        session.add(Batch(campaign_id=campaign.id, scope="acme/open", deadline=clock.now(),
                          status=BatchStatus.DETECTING.value, created_at=clock.now(),
                          updated_at=clock.now()))

    one = WebhookSender(store, settings, clock, "s1")
    two = WebhookSender(store, settings, clock, "s2")
    assert one.scan_batches() == 1
    assert two.scan_batches() == 0  # same deterministic delivery id: nothing new
    assert one.scan_batches() == 0
    asyncio.run(two.run_once())

    [delivery] = deliveries(store)
    assert delivery.status == "DELIVERED"
    body = json.loads(receiver.requests[0].body)
    assert body["event"] == "batch.completed"
    assert (body["data"]["id"], body["data"]["status"]) == (batch.id, "INCOMPLETE")
    assert body["data"]["missing"] == ["b.mp3"]


def test_two_senders_never_claim_the_same_delivery(store: Database, settings: Settings,
                                                   clock: ManualClock, campaign: Campaign,
                                                   corpus: Path) -> None:
    add_hook(store, clock, campaign, "http://127.0.0.1:9/unused")
    for _ in range(3):
        process_one_call(store, settings, clock, campaign, corpus)
    one = WebhookSender(store, settings, clock, "s1")
    two = WebhookSender(store, settings, clock, "s2")

    first, second = one.claim(limit=2), two.claim(limit=2)

    assert len(first) == 2 and len(second) == 1
    assert not set(first) & set(second)
    assert two.claim() == []
    clock.advance(settings.webhooks.timeout_seconds * 2 + 31)  # the leases ran out
    assert len(two.claim()) == 3
