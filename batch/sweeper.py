"""The sweeper: one pass over the landing tree and the batches, run on a timer and on demand.

A tick recomputes everything from the database and the landing tree, so a tick after a restart
simply continues where the last process stopped: scan the landing tree (record files that came
without events, clean up copies a crash left behind), route ready files into batches, end the
windows that ran out, import the files of processing batches, close the finished batches.
Ticks never overlap (one lock); their blocking parts run in worker threads. ``wake`` lets the
SFTP server ask for a tick soon after a file landed instead of waiting for the next interval; a
pass also wakes itself for a window that ends (or a file that turns stable) before the next
interval tick.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from datetime import datetime

from batch import detect
from batch.importer import Importer
from batch.lifecycle import Lifecycle
from batch.routing import Router
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder

log = logging.getLogger(__name__)
# Wakes this close together share one tick: an upload burst lands within a few milliseconds.
WAKE_SLACK_SECONDS = 0.25
# A self-wake lands just after the moment it waits for, never just before it.
DUE_SLACK_SECONDS = 0.05


class Sweeper:
    def __init__(self, db: Database, intake: Intake, recorder: LandingRecorder,
                 settings: Settings, clock: Clock) -> None:
        self.db = db
        self.recorder = recorder
        self.settings = settings
        self.clock = clock
        self.router = Router(db, clock, settings.landing_path)
        self.lifecycle = Lifecycle(db, clock)
        self.importer = Importer(db, intake, settings, clock)
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = self._timer_first_due = 0.0
        self._later: list[float] = []  # wakes asked for after the pending timer (a heap)
        self._queued = False  # a woken tick waits for the lock: later wakes ride along
        self._tasks: set[asyncio.Task[None]] = set()

    async def tick(self) -> None:
        """One full pass; waits for a running pass to end first."""
        async with self._lock:
            await self._pass()

    async def _pass(self) -> None:
        root = self.settings.landing_path
        leftovers = await asyncio.to_thread(detect.scan, self.db, self.recorder, root,
                                            self.settings.sftp.ignore_patterns)
        for row in leftovers:
            await asyncio.to_thread(self.importer.dispose, row)
            log.info("landing_leftover_cleaned file_id=%s status=%s", row.id, row.status)
        for file_id in await asyncio.to_thread(self.router.route_ready):
            await asyncio.to_thread(self.importer.dispose_by_id, file_id)
        await asyncio.to_thread(self.lifecycle.expire_deadlines)
        for file_id in await asyncio.to_thread(self.lifecycle.importable):
            try:
                await asyncio.to_thread(self.importer.import_file, file_id)
            except Exception:
                # One file's system trouble (storage down, ffmpeg missing) must not stop the
                # pass; the file stays waiting and is tried again on the next tick.
                log.exception("file_import_deferred file_id=%s", file_id)
        await asyncio.to_thread(self.lifecycle.close_finished)
        self._wake_before_next_interval(await asyncio.to_thread(self.lifecycle.next_due))

    def _wake_before_next_interval(self, due: datetime | None) -> None:
        """Come back when a window ends or a file turns stable before the next interval tick,
        so a batch closes at its deadline rather than up to one interval later."""
        if due is None:
            return
        delay = (due - self.clock.now()).total_seconds()
        if 0 < delay < self.settings.sweeper.interval_seconds:
            self.wake(delay + DUE_SLACK_SECONDS)

    def wake(self, delay: float = 0.0) -> None:
        """Run a tick ``delay`` seconds from now (call on the event loop); wakes coalesce.

        At most one tick waits to run besides the running one. Wakes due within
        ``WAKE_SLACK_SECONDS`` of the pending one move it a little later and share it; a wake
        due later still gets a tick of its own once the pending one has fired.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay, 0.0)
        if self._timer is None:
            self._timer, self._timer_due, self._timer_first_due = (
                loop.call_at(due, self._fire), due, due)
        elif due <= self._timer_first_due + WAKE_SLACK_SECONDS:
            if due > self._timer_due:
                self._timer.cancel()
                self._timer, self._timer_due = loop.call_at(due, self._fire), due
        else:
            # Each later wake keeps its own time: merging them into the latest one let a steady
            # stream of uploads push the tick of the earliest file out by seconds.
            heapq.heappush(self._later, due)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        while self._later and self._later[0] <= now:
            heapq.heappop(self._later)  # the tick about to run covers these
        if self._later:
            due = heapq.heappop(self._later)
            while self._later and self._later[0] <= due + WAKE_SLACK_SECONDS:
                due = heapq.heappop(self._later)  # close together: one tick for all
            self._timer, self._timer_due, self._timer_first_due = (
                loop.call_at(due, self._fire), due, due)
        if self._queued:
            return  # a tick is already waiting to start; it will see everything
        self._queued = True
        task = loop.create_task(self._woken_tick())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _woken_tick(self) -> None:
        try:
            async with self._lock:
                self._queued = False
                await self._pass()
        except Exception:
            log.exception("sweep_failed trigger=wake")
        finally:
            self._queued = False

    async def aclose(self) -> None:
        """Cancel a pending wake and wait for a woken tick in flight (for shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._later.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
