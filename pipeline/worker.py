"""The pipeline worker: claim a queued call, run its stages, repeat.

Claiming is the database's job (``Database.claim_calls``: one statement, ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so any number of workers, in one process or on several nodes, take each
call exactly once. A claim is a lease: the worker renews it while the stages run (every third of
``pipeline.lease_seconds``), and a worker that dies simply stops renewing — the call is claimed
again once the lease has run out. On shutdown the worker starts nothing new and hands back the
call it holds (lease cleared, status ``PENDING``) so another worker can take it at once.
The stages themselves live in ``pipeline.stages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import update

from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import Call, CallStatus
from ingestd.storage import Storage
from pipeline.stages import CallProcessor

log = logging.getLogger(__name__)


class Worker:
    """One claim-and-process loop; run several for parallelism."""

    def __init__(self, db: Database, storage: Storage, settings: Settings, clock: Clock,
                 worker_id: str, *, processor: CallProcessor | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id
        self.processor = processor or CallProcessor(db, storage, settings, clock, worker_id)
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Cut the current idle wait short: new work may be waiting."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and process calls until ``stop`` is set; wait between empty polls."""
        log.info("worker_started worker_id=%s", self.worker_id)
        while not stop.is_set():
            try:
                call_id = await self._claim()
            except Exception:
                log.exception("claim_failed worker_id=%s", self.worker_id)
                call_id = None
            if call_id is None:
                await self._idle(stop)
                continue
            await self._process_until(call_id, stop)
        log.info("worker_stopped worker_id=%s", self.worker_id)

    async def run_once(self) -> bool:
        """Claim and process at most one call; True if one was processed."""
        call_id = await self._claim()
        if call_id is None:
            return False
        await self._process_until(call_id, asyncio.Event())
        return True

    async def _claim(self) -> str | None:
        ids = await asyncio.to_thread(self.db.claim_calls, self.worker_id, self.clock.now(),
                                      self.settings.pipeline.lease_seconds, 1)
        if not ids:
            return None
        log.info("call_claimed call_id=%s worker_id=%s", ids[0], self.worker_id)
        return ids[0]

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.settings.pipeline.poll_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _process_until(self, call_id: str, stop: asyncio.Event) -> None:
        """Process the call with its lease renewed; release it if stopped or cancelled."""
        work = asyncio.create_task(self.processor.process(call_id))
        renewal = asyncio.create_task(self._renew_lease(call_id))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            renewal.cancel()
            stopped.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                await asyncio.to_thread(self._release, call_id)
        if work.done() and not work.cancelled() and work.exception() is not None:
            log.error("call_processing_crashed call_id=%s", call_id, exc_info=work.exception())

    async def _renew_lease(self, call_id: str) -> None:
        interval = self.settings.pipeline.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await asyncio.to_thread(self._extend_lease, call_id)
            except Exception:
                log.exception("lease_renewal_failed call_id=%s", call_id)
                continue
            if not held:
                return

    def _extend_lease(self, call_id: str) -> bool:
        until = self.clock.now() + timedelta(seconds=self.settings.pipeline.lease_seconds)
        with self.db.session() as session:
            result = session.execute(
                update(Call).where(Call.id == call_id, Call.claimed_by == self.worker_id)
                .values(lease_until=until))
        return result.rowcount > 0

    def _release(self, call_id: str) -> None:
        """Hand the call back unfinished: it restarts from transcription with the next claim."""
        with self.db.session() as session:
            result = session.execute(
                update(Call)
                .where(Call.id == call_id, Call.claimed_by == self.worker_id,
                       Call.status.in_([CallStatus.TRANSCRIBING.value,
                                        CallStatus.ANALYZING.value, CallStatus.PENDING.value]))
                .values(claimed_by=None, lease_until=None, status=CallStatus.PENDING.value,
                        updated_at=self.clock.now()))
        if result.rowcount:
            log.info("call_released call_id=%s worker_id=%s", call_id, self.worker_id)
