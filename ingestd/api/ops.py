"""``GET /healthz`` and ``GET /metrics`` at the server root, for probes and Prometheus.

``/metrics`` is the Prometheus text format (0.0.4): upload outcomes counted by this process
since it started, and the calls and batches in the database by status (gauges, the same on every
node). Neither endpoint needs a key or counts against a rate limit.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, text
from sqlmodel import select

from ingestd.api.context import api_context, request_id
from ingestd.api.envelope import ApiError, HealthEnvelope, error_responses, success_body
from ingestd.models import Batch, BatchStatus, Call, CallStatus

log = logging.getLogger("ingestd.api")
router = APIRouter()
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPLOAD_RESULTS = ("accepted", "duplicate", "rejected", "failed")


@router.get("/healthz", summary="Liveness and database check",
            responses={200: {"model": HealthEnvelope}, **error_responses(503)})
async def healthz(request: Request) -> Response:
    """200 when the server runs and the database answers, else 503."""
    ctx = api_context(request)

    def ping() -> None:
        with ctx.db.session() as session:
            session.exec(select(text("1"))).one()

    try:
        await asyncio.to_thread(ping)
    except Exception as exc:
        log.warning("health_check_failed error=%s", exc)
        raise ApiError(503, f"the database does not answer: {exc.__class__.__name__}") from exc
    return Response(success_body({"status": "ok", "database": "ok"}, request_id(request),
                                 ctx.clock), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"},
                       **error_responses(500)})
async def metrics(request: Request) -> Response:
    """Upload counters and calls/batches by status, in the Prometheus text format."""
    ctx = api_context(request)

    def counts() -> tuple[dict[str, int], dict[str, int]]:
        with ctx.db.session() as session:
            calls = session.exec(select(Call.status, func.count()).group_by(Call.status)).all()
            batches = session.exec(select(Batch.status, func.count())
                                   .group_by(Batch.status)).all()
            return ({status: count for status, count in calls},
                    {status: count for status, count in batches})

    calls, batches = await asyncio.to_thread(counts)
    lines = _family("ingestd_http_uploads_total", "counter",
                    "HTTP uploads handled by this process, by result",
                    {("result", r): ctx.uploads.get(r, 0) for r in UPLOAD_RESULTS})
    lines += _family("ingestd_calls", "gauge", "Calls in the database by status",
                     {("status", s.value): calls.get(s.value, 0) for s in CallStatus})
    lines += _family("ingestd_batches", "gauge", "Batches in the database by status",
                     {("status", s.value): batches.get(s.value, 0) for s in BatchStatus})
    return Response("\n".join(lines) + "\n", media_type=PROMETHEUS_TYPE)


def _family(name: str, kind: str, help_text: str,
            samples: dict[tuple[str, str], int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f'{name}{{{label}="{value}"}} {count}' for (label, value), count in samples.items()]
    return lines
