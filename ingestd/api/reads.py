"""The read endpoints: call ids of a campaign, one call, batches. Scoped to the key's campaign.

An id of another campaign answers 404, exactly like an id that does not exist, so a key learns
nothing about other campaigns. ``from_date``/``to_date`` filter on when the call was received
(``created_at``), inclusive; a bare date covers its whole day (UTC).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field
from sqlalchemy import func
from sqlmodel import Session, col, select

from ingestd.api.context import api_context, request_id, require_key
from ingestd.api.envelope import (
    ApiError,
    BatchListEnvelope,
    CallIdsEnvelope,
    ObjectEnvelope,
    error_responses,
    success_body,
)
from ingestd.api_keys import VerifiedKey
from ingestd.models import Batch, BatchStatus, Call, CallStatus, Campaign
from ingestd.views import batch_view, call_view

router = APIRouter()
MAX_OFFSET = 1_000_000_000
Limit = Query(100, ge=1, le=1000, description="Page size (at most 1000).")
Offset = Query(0, ge=0, le=MAX_OFFSET)
# A bare date must stay a date (to_date includes its whole day): try date first.
DateOrTime = Annotated[date | datetime | None, Field(union_mode="left_to_right")]
DATE_HELP = ("YYYY-MM-DD (the whole day, UTC) or ISO 8601 time; filters on when the call was "
             "received.")


@router.get("/campaigns/{campaign_id}/calls/ids", summary="Call ids of the key's campaign",
            responses={200: {"model": CallIdsEnvelope},
                       **error_responses(400, 401, 404, 429, 500)})
async def call_ids(request: Request, campaign_id: str, status: CallStatus | None = None,
                   from_date: DateOrTime = Query(None, description=DATE_HELP),
                   to_date: DateOrTime = Query(None, description=DATE_HELP),
                   limit: int = Limit, offset: int = Offset,
                   key: VerifiedKey = Depends(require_key)) -> Response:
    """Ids of the campaign's calls, oldest first; ``campaign_id`` may also be its slug."""
    start = _bound(from_date, end=False)
    stop = _bound(to_date, end=True)

    def query(session: Session) -> dict[str, Any]:
        _own_campaign(session, key, campaign_id)
        where = [Call.campaign_id == key.campaign_id]
        if status is not None:
            where.append(Call.status == status.value)
        if start is not None:
            where.append(Call.created_at >= start)
        if stop is not None:
            where.append(Call.created_at < stop)
        ids, page = _paged(session, select(Call.id), Call, where,
                           (col(Call.created_at), col(Call.id)), limit, offset)
        return {"call_ids": list(ids), **page}

    return await _answer(request, query)


@router.get("/calls/{call_id}", summary="One call of the key's campaign",
            responses={200: {"model": ObjectEnvelope}, **error_responses(401, 404, 429, 500)})
async def get_call(request: Request, call_id: str,
                   key: VerifiedKey = Depends(require_key)) -> Response:
    """Status, metadata, transcript, check results, score, flags and versions of a call."""
    def query(session: Session) -> dict[str, Any]:
        return call_view(session, _of_campaign(session, Call, call_id, key, "call"))

    return await _answer(request, query)


@router.get("/batches", summary="Batches of the key's campaign, newest first",
            responses={200: {"model": BatchListEnvelope},
                       **error_responses(400, 401, 429, 500)})
async def list_batches(request: Request, status: BatchStatus | None = None,
                       limit: int = Limit, offset: int = Offset,
                       key: VerifiedKey = Depends(require_key)) -> Response:
    """Batches without their file lists (``GET /batches/{id}`` has them)."""
    def query(session: Session) -> dict[str, Any]:
        where = [Batch.campaign_id == key.campaign_id]
        if status is not None:
            where.append(Batch.status == status.value)
        rows, page = _paged(session, select(Batch), Batch, where,
                            (col(Batch.created_at).desc(), col(Batch.id)), limit, offset)
        return {"batches": [batch_view(session, b, with_files=False) for b in rows], **page}

    return await _answer(request, query)


@router.get("/batches/{batch_id}", summary="One batch with its files",
            responses={200: {"model": ObjectEnvelope}, **error_responses(401, 404, 429, 500)})
async def get_batch(request: Request, batch_id: str,
                    key: VerifiedKey = Depends(require_key)) -> Response:
    """A batch with each file's status, reason, call and call status, and missing rows."""
    def query(session: Session) -> dict[str, Any]:
        return batch_view(session, _of_campaign(session, Batch, batch_id, key, "batch"))

    return await _answer(request, query)


def _paged(session: Session, statement: Any, model: Any, where: list[Any],
           order: tuple[Any, ...], limit: int, offset: int) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``statement`` and the paging fields of SPEC §5 (total, has_more, …)."""
    total = session.exec(select(func.count()).select_from(model).where(*where)).one()
    rows = list(session.exec(statement.where(*where).order_by(*order)
                             .offset(offset).limit(limit)).all())
    return rows, {"total": total, "limit": limit, "offset": offset,
                  "has_more": offset + len(rows) < total}


async def _answer(request: Request, query: Callable[[Session], Any]) -> Response:
    ctx = api_context(request)

    def run() -> Any:
        with ctx.db.session() as session:
            return query(session)

    data = await asyncio.to_thread(run)
    return Response(success_body(data, request_id(request), ctx.clock),
                    media_type="application/json")


def _own_campaign(session: Session, key: VerifiedKey, campaign_id: str) -> None:
    campaign = session.get(Campaign, key.campaign_id)
    if campaign is None or campaign_id not in (campaign.id, campaign.slug):
        raise ApiError(404, f"no campaign {campaign_id!r} for this key")


def _bound(value: date | datetime | None, *, end: bool) -> datetime | None:
    """An aware UTC bound; a bare date starts its day, or as ``to_date`` includes it."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time(), UTC)
        return _shift(value, timedelta(days=1)) if end else value
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return _shift(value, timedelta(microseconds=1)) if end else value


def _shift(value: datetime, delta: timedelta) -> datetime:
    try:
        return value + delta
    except OverflowError:  # the end of the calendar: no call is later than that anyway
        return value


_Owned = TypeVar("_Owned", Call, Batch)


def _of_campaign(session: Session, model: type[_Owned], row_id: str, key: VerifiedKey,
                 noun: str) -> _Owned:
    """The row with this id if it belongs to the key's campaign; 404 otherwise (another
    campaign's rows do not exist for this key)."""
    row = session.get(model, row_id)
    if row is None or row.campaign_id != key.campaign_id:
        raise ApiError(404, f"no {noun} {row_id!r} in this key's campaign")
    return row
