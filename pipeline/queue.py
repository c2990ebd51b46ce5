"""Putting calls (back) in the pipeline's queue: ``call retry``, ``call process``, ``reprocess``.

These only change rows; a worker (on any node) picks the call up on its next poll. A queued
call's ``stage`` says where it starts: ``analysis`` reuses the current transcript (see
``CallProcessor._resumable_transcript``), anything else starts from transcription. Results are
never overwritten: a reprocessed call gets a new transcript and/or analysis version, and the
earlier ones stay readable (``call show --json`` → ``versions``).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session

from ingestd import errors
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import Call, CallStatus
from pipeline.stages import ANALYSIS, TRANSCRIPTION

log = logging.getLogger(__name__)

IN_FLIGHT = (CallStatus.TRANSCRIBING.value, CallStatus.ANALYZING.value)


class Redo(StrEnum):
    """What ``reprocess`` redoes: transcription (then analysis) or the analysis only."""

    TRANSCRIPTION = TRANSCRIPTION
    ANALYSIS = ANALYSIS


def retry(db: Database, clock: Clock, call_id: str) -> Call:
    """Queue a FAILED call again, from the stage that failed (attempts start over)."""
    with db.session() as session:
        call = _load(session, call_id)
        if call.status != CallStatus.FAILED.value:
            raise errors.Conflict(f"call {call_id} is {call.status}: only a FAILED call can be "
                                  "retried")
        stage = ANALYSIS if call.stage == ANALYSIS and call.transcript_version else TRANSCRIPTION
        _queue(call, clock, stage)
        session.add(call)
    log.info("call_requeued call_id=%s stage=%s", call_id, stage)
    return call


def reprocess(db: Database, clock: Clock, call_id: str, redo: Redo) -> Call:
    """Queue a finished call for a new transcript (and analysis) or a new analysis only."""
    with db.session() as session:
        call = _load(session, call_id)
        if call.status == CallStatus.DUPLICATE.value:
            raise errors.Conflict(f"call {call_id} is a duplicate of {call.duplicate_of}: "
                                  "reprocess the original")
        if call.status in IN_FLIGHT or (call.status == CallStatus.PENDING.value and call.queued):
            raise errors.Conflict(f"call {call_id} is already queued ({call.status})")
        if redo is Redo.ANALYSIS and not call.transcript_version:
            raise errors.Conflict(f"call {call_id} has no transcript yet: reprocess with "
                                  "--transcription")
        _queue(call, clock, redo.value)
        session.add(call)
    log.info("call_reprocess_queued call_id=%s redo=%s", call_id, redo.value)
    return call


def process_campaign(db: Database, clock: Clock, campaign_id: str) -> int:
    """Queue the campaign's calls waiting in PENDING (``auto_process = false``); how many."""
    with db.session() as session:
        result = session.execute(
            update(Call)
            .where(Call.campaign_id == campaign_id, Call.status == CallStatus.PENDING.value,
                   Call.queued.is_(False))
            .values(queued=True, updated_at=clock.now()))
    log.info("campaign_calls_queued campaign_id=%s calls=%d", campaign_id, result.rowcount)
    return result.rowcount


def _load(session: Session, call_id: str) -> Call:
    call = session.get(Call, call_id, with_for_update=True)
    if call is None:
        raise errors.NotFound(f"no call {call_id!r}")
    return call


def _queue(call: Call, clock: Clock, stage: str) -> None:
    call.status, call.queued, call.stage = CallStatus.PENDING.value, True, stage
    call.error = call.next_attempt_at = call.claimed_by = call.lease_until = None
    call.attempts = 0
    call.updated_at = clock.now()
