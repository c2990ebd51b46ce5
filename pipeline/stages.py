"""The stages one claimed call goes through: transcription, analysis, scoring, and the outcome.

``CallProcessor.process`` starts from transcription, except for a call that resumes at analysis
(``reprocess --analysis``, a retry after analysis failed, a worker that died while analyzing):
it reuses the current transcript. A call taken over from a worker that died mid-transcription
(its lease ran out) is simply transcribed again; the half-finished run may have left an extra
transcript version, which is harmless (versions are never overwritten). Every write
checks that this worker still holds the call's claim: a worker that lost its lease (paused too
long, then resumed) must not overwrite the work of the one that took the call over.

Failures: a retryable ``ProviderError`` puts the call back to ``PENDING`` after an exponential
backoff with jitter, until ``pipeline.max_attempts``; anything else fails the call with the stage
and a reason an operator can read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from ingestd import errors
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import (
    Call,
    CallStatus,
    CallVersion,
    Campaign,
    QualityCheck,
    VersionKind,
    WebhookEvent,
)
from ingestd.storage import Storage
from pipeline import scoring, webhooks
from pipeline.analyze.base import Analyzer, CheckOutcome, CheckSpec, build_analyzer
from pipeline.provider import shared_slots
from pipeline.transcribe.base import Transcriber, Transcript, build_transcriber

log = logging.getLogger(__name__)

TRANSCRIPTION = "transcription"
ANALYSIS = "analysis"
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0


class LeaseLost(Exception):
    """Another worker holds the call now; this one must leave it alone."""


@dataclass(frozen=True)
class Job:
    """What the stages need to know about one claimed call, read once at the start."""

    call_id: str
    storage_key: str
    agent_channel: int
    transcriber: str
    analyzer: str
    flag_threshold: float
    checks: tuple[CheckSpec, ...]
    # Set when the call resumes at analysis: the current transcript, reused as it is.
    transcript: Transcript | None = None

    @property
    def hints(self) -> tuple[str, ...]:
        """The phrases the campaign's checks listen for, for transcribers that use hints."""
        return tuple(dict.fromkeys(p for check in self.checks for p in check.phrases))


def retry_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: doubling from 30 s, capped at 1 h,
    scaled by a random 50-100 % so workers that failed together do not retry together."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return ceiling * (rng or random).uniform(0.5, 1.0)


class CallProcessor:
    """Runs the stages for calls claimed by ``worker_id``."""

    def __init__(self, db: Database, storage: Storage, settings: Settings, clock: Clock,
                 worker_id: str) -> None:
        self.db = db
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id
        self.slots = shared_slots(settings.pipeline.provider_concurrency)

    async def process(self, call_id: str) -> None:
        """Take the call from wherever it stands to COMPLETED, PENDING (retry) or FAILED."""
        stage = TRANSCRIPTION
        try:
            job = await asyncio.to_thread(self._start, call_id)
            transcript = job.transcript
            if transcript is None:
                transcript = await self._transcribe(job)
                await asyncio.to_thread(self._save_transcript, job, transcript)
            stage = ANALYSIS
            analyzer = self.analyzer_for(job.analyzer)
            async with self.slots.hold(job.analyzer):
                outcomes = await analyzer.analyze(transcript, list(job.checks))
            await asyncio.to_thread(self._complete, job, outcomes)
        except LeaseLost:
            log.warning("call_lease_lost call_id=%s worker_id=%s", call_id, self.worker_id)
        except errors.ProviderError as exc:
            await asyncio.to_thread(self._provider_failed, call_id, stage, exc)
        except errors.IngestError as exc:
            await asyncio.to_thread(self._fail, call_id, stage, exc.message)
        except Exception as exc:
            log.exception("call_crashed call_id=%s stage=%s", call_id, stage)
            await asyncio.to_thread(self._fail, call_id, stage, f"unexpected error: {exc}")

    def transcriber_for(self, name: str) -> Transcriber:
        """The campaign's transcriber (a hook: tests subclass it to inject faults)."""
        return build_transcriber(name, self.settings)

    def analyzer_for(self, name: str) -> Analyzer:
        """The campaign's analyzer (a hook, like :meth:`transcriber_for`)."""
        return build_analyzer(name, self.settings)

    async def _transcribe(self, job: Job) -> Transcript:
        transcriber = self.transcriber_for(job.transcriber)
        async with self._local_copy(job.storage_key) as path, \
                self.slots.hold(job.transcriber):
            transcript = await transcriber.transcribe(path, job.agent_channel, job.hints)
        log.info("call_transcribed call_id=%s provider=%s utterances=%d", job.call_id,
                 transcript.provider, len(transcript.utterances))
        return transcript

    @asynccontextmanager
    async def _local_copy(self, key: str) -> AsyncIterator[Path]:
        # Entering may download the object (remote storage): keep it off the event loop.
        holder = self.storage.local_copy(key)
        path = await asyncio.to_thread(holder.__enter__)
        try:
            yield path
        finally:
            await asyncio.to_thread(holder.__exit__, None, None, None)

    def _start(self, call_id: str) -> Job:
        with self.db.session() as session:
            call = self._owned(session, call_id)
            if not call.storage_key:
                raise errors.StoreError("the call has no stored recording")
            campaign = session.get(Campaign, call.campaign_id)
            rows = session.exec(select(QualityCheck)
                                .where(QualityCheck.campaign_id == call.campaign_id)
                                .order_by(QualityCheck.id)).all()
            transcript = self._resumable_transcript(session, call)
            self._set_status(call, CallStatus.ANALYZING if transcript else CallStatus.TRANSCRIBING)
            session.add(call)
            return Job(call_id=call.id, storage_key=call.storage_key,
                       agent_channel=campaign.agent_channel, transcriber=campaign.transcriber,
                       analyzer=campaign.analyzer, flag_threshold=campaign.flag_threshold,
                       checks=tuple(CheckSpec.from_row(row) for row in rows),
                       transcript=transcript)

    def _resumable_transcript(self, session: Session, call: Call) -> Transcript | None:
        """The current transcript when the call resumes at analysis: it was queued for
        analysis only (``reprocess --analysis``, a retry after analysis failed), or a worker died
        while analyzing. Otherwise None: transcription runs (again)."""
        at_analysis = call.stage == ANALYSIS or call.status == CallStatus.ANALYZING.value
        if not at_analysis or call.transcript_version <= 0:
            return None
        row = session.exec(select(CallVersion).where(
            CallVersion.call_id == call.id, CallVersion.kind == VersionKind.TRANSCRIPT.value,
            CallVersion.version == call.transcript_version)).first()
        return Transcript.from_json(row.data, row.provider) if row else None

    def _save_transcript(self, job: Job, transcript: Transcript) -> None:
        with self.db.session() as session:
            call = self._owned(session, job.call_id)
            call.transcript_version = self._add_version(
                session, call.id, VersionKind.TRANSCRIPT, transcript.provider,
                transcript.to_json())
            self._set_status(call, CallStatus.ANALYZING)
            session.add(call)

    def _complete(self, job: Job, outcomes: list[CheckOutcome]) -> None:
        verdict = scoring.judge(outcomes, job.checks, job.flag_threshold)
        data = {"checks": [outcome.to_json() for outcome in outcomes], "score": verdict.score,
                "flagged": verdict.flagged, "flag_reasons": list(verdict.flag_reasons)}
        with self.db.session() as session:
            call = self._owned(session, job.call_id)
            call.analysis_version = self._add_version(session, call.id, VersionKind.ANALYSIS,
                                                      job.analyzer, data)
            call.score, call.flagged = verdict.score, verdict.flagged
            call.flag_reasons = list(verdict.flag_reasons)
            self._set_status(call, CallStatus.COMPLETED)
            call.completed_at = call.updated_at
            call.stage = call.error = call.next_attempt_at = None
            call.attempts = 0
            _release(call)
            session.add(call)
            webhooks.enqueue_call_event(session, call, WebhookEvent.CALL_COMPLETED,
                                        self.clock.now())
        log.info("call_completed call_id=%s score=%s flagged=%s", job.call_id, verdict.score,
                 verdict.flagged)

    def _provider_failed(self, call_id: str, stage: str, exc: errors.ProviderError) -> None:
        with self.db.session() as session:
            call = self._owned_or_none(session, call_id)
            if call is None:
                return
            attempts = call.attempts + 1
            if exc.retryable and attempts < self.settings.pipeline.max_attempts:
                delay = retry_delay(attempts)
                call.attempts, call.stage, call.error = attempts, stage, exc.message
                call.next_attempt_at = self.clock.now() + timedelta(seconds=delay)
                self._set_status(call, CallStatus.PENDING)
                _release(call)
                session.add(call)
                log.warning("call_retry_scheduled call_id=%s stage=%s attempt=%d delay=%.0f "
                            "error=%s", call_id, stage, attempts, delay, exc.message)
                return
            if exc.retryable:
                call.attempts = attempts
            suffix = f" (gave up after {attempts} attempts)" if exc.retryable else ""
            self._mark_failed(session, call, stage, exc.message + suffix)

    def _fail(self, call_id: str, stage: str, reason: str) -> None:
        with self.db.session() as session:
            call = self._owned_or_none(session, call_id)
            if call is not None:
                self._mark_failed(session, call, stage, reason)

    def _mark_failed(self, session: Session, call: Call, stage: str, reason: str) -> None:
        call.stage, call.error = stage, reason
        call.next_attempt_at = None
        self._set_status(call, CallStatus.FAILED)
        _release(call)
        session.add(call)
        webhooks.enqueue_call_event(session, call, WebhookEvent.CALL_FAILED, self.clock.now())
        log.warning("call_failed call_id=%s stage=%s error=%s", call.id, stage, reason)

    def _owned(self, session: Session, call_id: str) -> Call:
        call = session.get(Call, call_id, with_for_update=True)
        if call is None or call.claimed_by != self.worker_id:
            raise LeaseLost(call_id)
        return call

    def _owned_or_none(self, session: Session, call_id: str) -> Call | None:
        try:
            return self._owned(session, call_id)
        except LeaseLost:
            log.warning("call_lease_lost call_id=%s worker_id=%s", call_id, self.worker_id)
            return None

    def _add_version(self, session: Session, call_id: str, kind: VersionKind, provider: str,
                     data: dict) -> int:
        latest = session.exec(select(func.max(CallVersion.version))
                              .where(CallVersion.call_id == call_id,
                                     CallVersion.kind == kind.value)).one()
        version = (latest or 0) + 1
        session.add(CallVersion(call_id=call_id, kind=kind.value, version=version,
                                provider=provider, data=data, created_at=self.clock.now()))
        return version

    def _set_status(self, call: Call, status: CallStatus) -> None:
        call.status = status.value
        call.updated_at = self.clock.now()


def _release(call: Call) -> None:
    call.claimed_by = None
    call.lease_until = None
