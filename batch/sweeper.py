"""The sweeper: passes over the landing tree and the batches, run on a timer and on demand.

A pass recomputes everything from the database and the landing tree, so a pass after a restart
simply continues where the last process stopped. It comes in two parts with a lock each:

- the **route pass** detects files (a walk of the whole landing tree at start-up and on every
  interval tick; otherwise only the paths that filesystem events named), cleans up copies a
  crash left behind, routes ready files into batches, ends the windows that ran out and closes
  finished batches. It is quick, so a complete batch turns ``PROCESSING`` at once;
- the **import pass** imports the files of processing batches (in chunks, so a stop waits for
  one chunk at most) and closes the batches that finished. It runs beside route passes, never
  in their way: a large batch being imported does not delay the next batch's detection.

The blocking parts run in worker threads. ``wake`` lets the SFTP server ask for a route pass
soon after a file landed instead of waiting for the next interval (its rows are recorded
already, so no walk is needed); a pass also wakes itself for a window that ends (or a file that
turns stable) before the next interval tick.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from concurrent.futures import ThreadPoolExecutor
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
from ingestd.priority import IMPORT_NICENESS, lower_thread_priority

log = logging.getLogger(__name__)
# Wakes this close together share one tick: an upload burst lands within a few milliseconds.
WAKE_SLACK_SECONDS = 0.25
# How long a pass waits after a filesystem event: files that arrive by other means than SFTP
# must stay stable for seconds anyway, and an SFTP landing's own report arrives within this.
EVENT_DELAY_SECONDS = 0.05
# A self-wake lands just after the moment it waits for, never just before it.
DUE_SLACK_SECONDS = 0.05
# Files imported per worker-thread call: a stop waits for at most one chunk.
IMPORT_CHUNK = 200


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
        self._scan_wanted = True  # the first pass after start-up walks the whole tree
        self._changed_paths: set[str] = set()  # named by filesystem events since the last pass
        # Landed paths the SFTP server reported (and records itself) during this pass and the
        # one before: the filesystem events of their renames are not looked at again.
        self._reported: set[str] = set()
        self._reported_before: set[str] = set()
        self._import_lock = asyncio.Lock()
        # Imports (hashing, copying, fsync) run in a thread of their own that yields the CPU to
        # everything else: an SFTP client waiting for its CLOSE comes before a file's import.
        self._import_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import",
                                                 initializer=lower_thread_priority,
                                                 initargs=(IMPORT_NICENESS,))
        self._import_task: asyncio.Task[None] | None = None
        self._import_again = False
        self._closing = False

    async def tick(self) -> None:
        """One full pass (scan of the whole landing tree, routing, imports); waits for a
        running pass to end first. The interval timer and the tests call this."""
        self._scan_wanted = True
        async with self._lock:
            await self._route_pass()
        await self._import_pass()

    def landing_changed(self, rel_path: str) -> None:
        """A filesystem event named this landing path (call on the event loop): look at it on
        the next pass. That pass records the file with its ``stable_at`` and wakes itself for
        that moment (``_wake_before_next_interval``), so no second wake is needed here.
        A path the SFTP server reported (:meth:`landing_reported`) needs neither look nor wake:
        looking at it recorded the file a second time, beside the change queue."""
        if rel_path in self._reported or rel_path in self._reported_before:
            return
        self._changed_paths.add(rel_path)
        # Not at once: the SFTP server's report of the same landing may still be on its way
        # (its rename raised this event first); the pass subtracts what was reported by then.
        self.wake(EVENT_DELAY_SECONDS)

    def landing_events_lost(self) -> None:
        """Filesystem events of the landing tree were lost (call on the event loop): the next
        pass, at once, walks the whole tree."""
        self._scan_wanted = True
        self.wake()

    def landing_reported(self, rel_path: str) -> None:
        """The SFTP server landed this path and its change is being recorded (call on the event
        loop): a filesystem event for it needs no look of its own. Looking anyway recorded the
        file twice, from two threads at once, and the loser of that race retried its whole group
        one change at a time."""
        self._reported.add(rel_path)

    async def _route_pass(self) -> None:
        """Detect, route, end windows, close batches: the quick part that decides batches.

        Imports run in their own pass (:meth:`_import_pass`), so a batch is routed and moved to
        ``PROCESSING`` the moment it is complete even while an earlier batch is being imported.
        """
        root, patterns = self.settings.landing_path, self.settings.sftp.ignore_patterns
        if self._scan_wanted:
            self._scan_wanted = False
            self._changed_paths.clear()  # the walk sees them all
            leftovers = await asyncio.to_thread(detect.scan, self.db, self.recorder, root,
                                                patterns)
        else:
            changed, self._changed_paths = self._changed_paths, set()
            changed -= self._reported | self._reported_before
            self._reported_before, self._reported = self._reported, set()
            leftovers = await asyncio.to_thread(detect.check_paths, self.db, self.recorder, root,
                                                changed, patterns) if changed else []
        for row in leftovers:
            await asyncio.to_thread(self.importer.dispose, row)
            log.info("landing_leftover_cleaned file_id=%s status=%s", row.id, row.status)
        for file_id in await asyncio.to_thread(self.router.route_ready):
            await asyncio.to_thread(self.importer.dispose_by_id, file_id)
        await asyncio.to_thread(self.lifecycle.expire_deadlines)
        await asyncio.to_thread(self.lifecycle.close_finished)
        self._wake_before_next_interval(await asyncio.to_thread(self.lifecycle.next_due))

    async def _import_pass(self) -> None:
        """Import every file waiting in a processing batch, then close the finished batches."""
        async with self._import_lock:
            file_ids = await asyncio.to_thread(self.lifecycle.importable)
            for start in range(0, len(file_ids), IMPORT_CHUNK):
                if self._closing:
                    return
                await asyncio.get_running_loop().run_in_executor(
                    self._import_thread, self.importer.import_files,
                    file_ids[start:start + IMPORT_CHUNK])
            if file_ids:
                await asyncio.to_thread(self.lifecycle.close_finished)

    def _kick_import(self) -> None:
        """Run an import pass after this route pass, without holding up the next route pass;
        one runs at a time, and a kick during one makes it run once more."""
        self._import_again = True
        if self._import_task is not None:
            return
        self._import_task = asyncio.get_running_loop().create_task(self._import_loop())

    async def _import_loop(self) -> None:
        try:
            while self._import_again:
                self._import_again = False
                try:
                    await self._import_pass()
                except Exception:
                    log.exception("import_pass_failed")
        finally:
            self._import_task = None

    def _wake_before_next_interval(self, due: datetime | None) -> None:
        """Come back when a window ends or a file turns stable before the next interval tick,
        so a batch closes at its deadline rather than up to one interval later."""
        if due is None:
            return
        delay = (due - self.clock.now()).total_seconds()
        if 0 < delay < self.settings.sweeper.interval_seconds:
            self.wake(delay + DUE_SLACK_SECONDS)

    def wake(self, delay: float = 0.0) -> None:
        """Run a route pass ``delay`` seconds from now (call on the event loop); wakes coalesce.

        At most one pass waits to run besides the running one. Wakes due within
        ``WAKE_SLACK_SECONDS`` after the pending one's first wake move it a little later and
        share it; a wake due earlier takes the timer (the pending one waits its turn); a wake due
        later still gets a pass of its own once the pending one has fired.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay, 0.0)
        if self._timer is None:
            self._set_timer(loop, due)
        elif due < self._timer_first_due:
            heapq.heappush(self._later, self._timer_due)
            self._timer.cancel()
            self._set_timer(loop, due)
        elif due <= self._timer_first_due + WAKE_SLACK_SECONDS:
            if due > self._timer_due:
                self._timer.cancel()
                self._timer, self._timer_due = loop.call_at(due, self._fire), due
        else:
            # Each later wake keeps its own time: merging them into the latest one let a steady
            # stream of uploads push the pass of the earliest file out by seconds.
            heapq.heappush(self._later, due)

    def _set_timer(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self._timer, self._timer_due, self._timer_first_due = (
            loop.call_at(due, self._fire), due, due)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        while self._later and self._later[0] <= now:
            heapq.heappop(self._later)  # the pass about to run covers these
        if self._later:
            first = due = heapq.heappop(self._later)
            # Only wakes close to the *first* one share its pass: chaining each to the previous
            # one let a steady stream of wakes (an upload every 0.1 s) postpone it for seconds.
            while self._later and self._later[0] <= first + WAKE_SLACK_SECONDS:
                due = heapq.heappop(self._later)
            self._timer, self._timer_due, self._timer_first_due = (
                loop.call_at(due, self._fire), due, first)
        if self._queued:
            return  # a pass is already waiting to start; it will see everything
        self._queued = True
        task = loop.create_task(self._woken_tick())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _woken_tick(self) -> None:
        try:
            async with self._lock:
                self._queued = False
                await self._route_pass()
            self._kick_import()
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
        if self._import_task is not None:
            self._closing = True  # finish the chunk in flight, start no other
            await asyncio.gather(self._import_task, return_exceptions=True)
        self._import_thread.shutdown(wait=True)

