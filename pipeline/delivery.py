"""The webhook sender: claims due deliveries from the outbox and POSTs them, signed.

Claiming works like the pipeline's (one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED) RETURNING id`` statement; SQLite's single writer makes it atomic there), so every node
may run a sender and each delivery is attempted by one of them at a time; a sender that dies
leaves its lease to run out. Every attempt is logged on the delivery row (attempts, last status
code, last error). Before claiming, the sender enqueues ``batch.completed`` for batches closed
since its last scan (see ``pipeline.webhooks``). Formats and signature: ``pipeline.webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import (
    TERMINAL_BATCH_STATUSES,
    Batch,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
)
from pipeline import webhooks
from pipeline.stages import retry_delay

log = logging.getLogger(__name__)

CLAIM_LIMIT = 10
# On the first scan, batches closed this long ago still get their event (a restart's gap).
BATCH_LOOKBACK_SECONDS = 24 * 3600.0
# Rescan a little of the previous window: a batch's closed_at is stamped before its commit.
SCAN_OVERLAP_SECONDS = 300.0


class WebhookSender:
    """One sender loop per node; ``run`` until ``stop`` is set."""

    def __init__(self, db: Database, settings: Settings, clock: Clock, sender_id: str) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.sender_id = sender_id
        self._scanned_until = clock.now() - timedelta(seconds=BATCH_LOOKBACK_SECONDS)

    async def run(self, stop: asyncio.Event) -> None:
        """Scan, claim and deliver until ``stop``; wait ``pipeline.poll_seconds`` when idle."""
        log.info("webhook_sender_started sender_id=%s", self.sender_id)
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("webhook_round_failed sender_id=%s", self.sender_id)
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.pipeline.poll_seconds)
        log.info("webhook_sender_stopped sender_id=%s", self.sender_id)

    async def run_once(self) -> int:
        """One round: enqueue closed batches, deliver what is due; the number attempted."""
        await asyncio.to_thread(self.scan_batches)
        claimed = await asyncio.to_thread(self.claim)
        await asyncio.gather(*(self.deliver(delivery_id) for delivery_id in claimed))
        return len(claimed)

    def scan_batches(self) -> int:
        """Enqueue ``batch.completed`` for batches closed since the last scan."""
        now = self.clock.now()
        since = self._scanned_until - timedelta(seconds=SCAN_OVERLAP_SECONDS)
        with self.db.session() as session:
            ids = list(session.exec(select(Batch.id).where(
                col(Batch.closed_at) >= since,
                col(Batch.status).in_([s.value for s in TERMINAL_BATCH_STATUSES]))))
        created = sum(self._enqueue_batch(batch_id, now) for batch_id in ids)
        self._scanned_until = now
        return created

    def _enqueue_batch(self, batch_id: str, now: object) -> int:
        try:
            with self.db.session() as session:
                batch = session.get(Batch, batch_id)
                created = webhooks.enqueue_batch_event(session, batch, now) if batch else []
        except IntegrityError:
            return 0  # another node enqueued the same delivery id first
        for delivery_id in created:
            log.info("webhook_enqueued delivery_id=%s event=batch.completed batch_id=%s",
                     delivery_id, batch_id)
        return len(created)

    def claim(self, limit: int = CLAIM_LIMIT) -> list[str]:
        """Claim up to ``limit`` due deliveries for this sender (one statement)."""
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.webhooks.timeout_seconds * 2 + 30)
        due = (select(WebhookDelivery.id)
               .where(WebhookDelivery.status == DeliveryStatus.PENDING.value,
                      or_(col(WebhookDelivery.lease_until).is_(None),
                          col(WebhookDelivery.lease_until) < now),
                      or_(col(WebhookDelivery.next_attempt_at).is_(None),
                          col(WebhookDelivery.next_attempt_at) <= now))
               .order_by(col(WebhookDelivery.created_at)).limit(limit)
               .with_for_update(skip_locked=True))
        statement = (update(WebhookDelivery)
                     .where(col(WebhookDelivery.id).in_(due.scalar_subquery()))
                     .values(claimed_by=self.sender_id, lease_until=now + lease)
                     .returning(WebhookDelivery.id)
                     .execution_options(synchronize_session=False))
        with self.db.session() as session:
            return list(session.execute(statement).scalars())

    async def deliver(self, delivery_id: str) -> None:
        """POST one claimed delivery and record the attempt."""
        loaded = await asyncio.to_thread(self._load, delivery_id)
        if loaded is None:
            return
        delivery, hook = loaded
        if not hook.active:
            await asyncio.to_thread(self._record, delivery_id, None, "the webhook is disabled",
                                    True)
            return
        body = webhooks.body_of(delivery)
        headers = {"Content-Type": "application/json", webhooks.EVENT_HEADER: delivery.event,
                   webhooks.DELIVERY_HEADER: delivery.id,
                   webhooks.SIGNATURE_HEADER: webhooks.sign(hook.secret, body)}
        status, error = await self._post(hook.url, body, headers)
        await asyncio.to_thread(self._record, delivery_id, status, error, False)

    async def _post(self, url: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int | None, str | None]:
        timeout = self.settings.webhooks.timeout_seconds
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, f"no answer within {timeout:g} s"
        except httpx.HTTPError as exc:
            return None, f"could not connect: {exc}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"

    def _load(self, delivery_id: str) -> tuple[WebhookDelivery, Webhook] | None:
        with self.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.claimed_by != self.sender_id:
                return None
            hook = session.get(Webhook, delivery.webhook_id)
            return (delivery, hook) if hook is not None else None

    def _record(self, delivery_id: str, status: int | None, error: str | None,
                give_up: bool) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
            if delivery is None or delivery.claimed_by != self.sender_id:
                return  # our lease ran out and another sender has it now
            delivery.attempts += 1
            delivery.last_status_code, delivery.last_error = status, error
            delivery.claimed_by = delivery.lease_until = None
            if error is None:
                delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED.value, now
                delivery.next_attempt_at = None
            elif give_up or delivery.attempts >= self.settings.webhooks.max_attempts:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED.value, None
            else:
                delivery.next_attempt_at = now + timedelta(
                    seconds=retry_delay(delivery.attempts))
            session.add(delivery)
        log.info("webhook_attempted delivery_id=%s status_code=%s error=%s attempt=%d",
                 delivery_id, status, error, delivery.attempts)
