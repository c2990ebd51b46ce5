"""Webhooks (SPEC §5): events are written to an outbox in the transaction that caused them, and a
sender delivers them, signed, with retries and a delivery log.

Events: ``call.completed`` and ``call.failed`` (enqueued by ``pipeline.stages`` in the same
transaction that sets the call's status, so no event is lost or sent for a rolled-back change),
and ``batch.completed`` (a batch reached its terminal status — ``COMPLETED``, ``INCOMPLETE``,
``FAILED`` or ``CANCELLED``, given as ``data.status``). The batch layer does not know about
webhooks: the sender scans for batches closed since its last scan and enqueues their event under
a delivery id derived from webhook id + batch id, so several nodes scanning the same batch still
enqueue it once.

What a receiver gets: ``POST`` to the webhook URL, ``Content-Type: application/json``, body
``{"id": <delivery id>, "event": …, "created_at": …, "data": {…}}`` (compact JSON, sorted keys)
and the headers ``X-Ingestd-Event``, ``X-Ingestd-Delivery`` and
``X-Ingestd-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook's secret>``.
Any 2xx is delivered; anything else (or no answer within ``webhooks.timeout_seconds``) is retried
with the pipeline's backoff until ``webhooks.max_attempts``, then the delivery is ``FAILED``.
The sender (``WebhookSender``) lives in ``pipeline.delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from ingestd.clock import isoformat
from ingestd.models import Batch, Call, DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from ingestd.views import batch_view, call_view

SIGNATURE_HEADER = "X-Ingestd-Signature"
EVENT_HEADER = "X-Ingestd-Event"
DELIVERY_HEADER = "X-Ingestd-Delivery"


def sign(secret: str, body: bytes) -> str:
    """The value of ``X-Ingestd-Signature`` for ``body``: ``sha256=<hex digest>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent (and signed): the same on every attempt."""
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def subscribed(session: Session, campaign_id: str, event: WebhookEvent) -> list[Webhook]:
    """The campaign's active webhooks that want ``event`` (no events listed: all of them)."""
    hooks = session.exec(select(Webhook).where(Webhook.campaign_id == campaign_id,
                                               Webhook.active)).all()
    return [hook for hook in hooks if not hook.events or event.value in hook.events]


def enqueue_call_event(session: Session, call: Call, event: WebhookEvent,
                       now: datetime) -> list[str]:
    """Outbox rows for ``event`` about ``call``, in the caller's transaction; their ids."""
    hooks = subscribed(session, call.campaign_id, event)
    if not hooks:
        return []
    data = call_view(session, call, with_details=False)
    if event is WebhookEvent.CALL_COMPLETED:
        data["checks"] = call_view(session, call)["checks"]
    return [_add(session, hook, event, data, now).id for hook in hooks]


def enqueue_batch_event(session: Session, batch: Batch, now: datetime) -> list[str]:
    """``batch.completed`` deliveries for a closed batch, once per webhook however often asked."""
    hooks = [hook for hook in subscribed(session, batch.campaign_id,
                                         WebhookEvent.BATCH_COMPLETED)
             if batch.closed_at is not None and batch.closed_at >= hook.created_at]
    created = []
    for hook in hooks:
        delivery_id = batch_delivery_id(hook.id, batch.id)
        if session.get(WebhookDelivery, delivery_id) is None:
            data = batch_view(session, batch)
            created.append(_add(session, hook, WebhookEvent.BATCH_COMPLETED, data, now,
                                delivery_id).id)
    return created


def batch_delivery_id(webhook_id: str, batch_id: str) -> str:
    """Deterministic, so two nodes that see the same closed batch write the same row."""
    return "dlv_" + hashlib.sha256(f"{webhook_id}:{batch_id}".encode()).hexdigest()[:16]


def _add(session: Session, hook: Webhook, event: WebhookEvent, data: dict[str, Any],
         now: datetime, delivery_id: str | None = None) -> WebhookDelivery:
    delivery = WebhookDelivery(webhook_id=hook.id, event=event.value,
                               status=DeliveryStatus.PENDING.value, created_at=now,
                               next_attempt_at=now)
    if delivery_id:
        delivery.id = delivery_id
    delivery.payload = {"id": delivery.id, "event": event.value, "created_at": isoformat(now),
                        "data": data}
    session.add(delivery)
    return delivery


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    """One line of the delivery log (``ingestd webhook deliveries``)."""
    return {"id": delivery.id, "webhook_id": delivery.webhook_id, "event": delivery.event,
            "status": delivery.status, "attempts": delivery.attempts,
            "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
            "next_attempt_at": isoformat(delivery.next_attempt_at),
            "created_at": isoformat(delivery.created_at),
            "delivered_at": isoformat(delivery.delivered_at)}


def webhook_view(hook: Webhook) -> dict[str, Any]:
    """A webhook without its secret (shown once, at creation)."""
    return {"id": hook.id, "campaign_id": hook.campaign_id, "url": hook.url,
            "events": list(hook.events) or [e.value for e in WebhookEvent],
            "active": hook.active, "created_at": isoformat(hook.created_at)}
