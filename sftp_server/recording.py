"""Where the SFTP sessions' landing changes go: a :class:`ChangeSink`, usually a ChangeQueue.

Every session hands its changes (a file landed, a path reopened for writing, a file removed) to
one sink. :class:`ChangeQueue` is the sink that records them: a single task writes them in
arrival order, everything queued so far in one transaction (``LandingRecorder.apply``), so a
burst of small uploads costs one commit per group instead of one per file, and no session ever
waits behind a commit for its CLOSE. (The daemon's SFTP processes use a sink that forwards the
changes, in order, to the main process, whose ChangeQueue records them: see
``cli/sftp_process.py``.)

Why a CLOSE need not wait for its row: the file is already under its final name in the landing
tree when the client hears "ok", and a file there without a row is what the sweeper's
start-up and interval walks record. A crash between the two loses nothing; a database error is
logged and the walk records the file later. The changes whose outcome the client must hear about
(reopening a waiting file for writing) are awaited by their session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from ingestd.landing import LandingChange, LandingRecorder

log = logging.getLogger(__name__)
# Upper bound of one transaction: keeps a huge backlog from holding the writer lock for long.
MAX_GROUP = 500
# How long the first change of a group waits for others: a client sending file after file gets
# one commit per this many milliseconds instead of one per file (a group's two reads, insert and
# commit cost a few ms of CPU, a small upload's whole SFTP exchange about 1 ms). Detection waits
# as long at most. 100 ms instead of 25 ms: 15-20 % less main-process CPU per 4 KiB upload, and
# the detection targets (p99 <= 500 ms) keep ample room.
GROUP_DELAY_SECONDS = 0.1


class ChangeSink(Protocol):
    """What the SFTP sessions hand their landing changes to, in the order they happen."""

    def submit(self, change: LandingChange, *,
               urgent: bool = False) -> asyncio.Future[str | None]:
        """Take ``change``; the future ends once it is recorded or handed on (``urgent``: a
        session waits for it before answering its client)."""
        ...

    async def recorded(self) -> None:
        """Wait until every change submitted so far is recorded or handed on."""
        ...

    async def aclose(self) -> None:
        """Record or hand on what is queued, then stop (call after the sessions ended)."""
        ...


class ChangeQueue:
    """Records landing changes in order in the background; ``on_landed`` runs once per group
    that recorded at least one complete file (it pokes the sweeper)."""

    def __init__(self, recorder: LandingRecorder, on_landed: Callable[[], None]) -> None:
        self.recorder = recorder
        self.on_landed = on_landed
        self._pending: list[tuple[LandingChange, asyncio.Future[str | None]]] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._urgent = False
        self._last: asyncio.Future[str | None] | None = None

    def submit(self, change: LandingChange, *,
               urgent: bool = False) -> asyncio.Future[str | None]:
        """Queue ``change``; the future gives the recorded row id once its group committed.

        ``urgent``: someone waits for this change (a session before answering its client), so
        its group is written without waiting for more changes.
        """
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        self._last = future
        self._urgent = self._urgent or urgent
        self._queued.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return future

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            if not (self._urgent or self._closing):
                await asyncio.sleep(GROUP_DELAY_SECONDS)
            self._queued.clear()
            self._urgent = False
            while self._pending:
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                await self._write(group)
            if self._closing:
                return

    async def _write(self, group: list[tuple[LandingChange, asyncio.Future[str | None]]]) -> None:
        try:
            file_ids = await asyncio.to_thread(self.recorder.apply, [c for c, _ in group])
        except Exception as exc:
            # The files stay in the landing tree; the next walk of it records them.
            log.exception("landing_changes_not_recorded count=%d first=%s", len(group),
                          group[0][0].rel_path)
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a fire-and-forget change is not an error
            return
        for (_, future), file_id in zip(group, file_ids, strict=True):
            if not future.done():
                future.set_result(file_id)
        if any(file_id is not None and change.kind == "landed"
               for (change, _), file_id in zip(group, file_ids, strict=True)):
            self.on_landed()

    async def recorded(self) -> None:
        """Wait until every change submitted so far was written (or failed to be)."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)

    async def aclose(self) -> None:
        """Write what is queued, then stop (call after the sessions ended)."""
        self._closing = True
        self._queued.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
