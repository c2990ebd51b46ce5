"""The composition root: builds every part of the daemon and runs them in one asyncio loop.

This is the only place that knows all the parts (SFTP server, sweeper and scheduler, pipeline
workers, HTTP API) and the only place that starts an event loop. The parts never call each
other: the SFTP processes report landing changes, recorded here as file rows, and the sweeper
is woken through the ``on_landed`` callback wired here; the sweeper creates ``PENDING`` calls
that the workers claim from the database. The SFTP server itself runs in child processes of its
own (``cli.sftp_process``), so that uploads never wait for imports on a shared core; everything
else runs in this loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvloop

from batch.schedule import start_scheduler, stop_scheduler
from batch.sweeper import Sweeper
from batch.watch import start_watching
from cli.sftp_process import SftpProcesses, start_sftp_processes
from ingestd import errors
from ingestd.api.server import HttpServer, start_http_server
from ingestd.clock import Clock, SystemClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingChange, LandingRecorder
from ingestd.priority import BACKGROUND_NICENESS, lower_thread_priority
from ingestd.storage import build_storage
from pipeline.delivery import WebhookSender
from pipeline.worker import Worker
from sftp_server.recording import ChangeQueue

log = logging.getLogger("ingestd.daemon")
SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass
class Running:
    """What a started daemon holds, in the order it is stopped."""

    db: Database
    sftp: SftpProcesses | None  # None when disabled
    sftp_changes: ChangeQueue  # records the SFTP processes' landing changes
    http: HttpServer | None
    watcher: Any
    scheduler: Any
    sweeper: Sweeper
    tasks: list[asyncio.Task] = field(default_factory=list)


@dataclass
class Daemon:
    """Everything ``serve`` runs; :meth:`run` returns after a stop signal and a clean shutdown."""

    settings: Settings
    announce: Callable[[str], None] = print
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None  # why a part ended on its own, which stops the daemon

    async def run(self) -> None:
        running = await self._start()
        self.announce(f"ingestd: running (data in {self.settings.data_path.resolve()}); "
                      "Ctrl-C or SIGTERM stops it")
        try:
            await self.stop.wait()
        finally:
            await self._shutdown(running)
        if self.failure:
            raise errors.IngestError(self.failure)

    async def _start(self) -> Running:
        settings, clock = self.settings, SystemClock()
        if settings.pull.sources:
            # Refused rather than ignored: an operator who configured them expects them to run.
            raise errors.ConfigError("[pull] sources are not supported by this release yet: "
                                     "remove them from the configuration")
        db = Database(settings.database_url)
        await asyncio.to_thread(db.migrate)
        storage = build_storage(settings)
        intake = Intake(db, storage, settings.limits, clock)
        recorder = LandingRecorder(db, clock, settings.sftp.stable_seconds,
                                   settings.sftp.ignore_patterns)
        sweeper = Sweeper(db, intake, recorder, settings, clock)
        sftp_changes = ChangeQueue(recorder, lambda: sweeper.wake(settings.sftp.stable_seconds))
        running = Running(db=db, sftp=await self._start_sftp(sftp_changes, sweeper),
                          sftp_changes=sftp_changes,
                          http=await self._start_http(db, intake, clock),
                          watcher=start_watching(settings, sweeper),
                          scheduler=start_scheduler(sweeper, settings.sweeper.interval_seconds),
                          sweeper=sweeper)
        node = _node_name()
        loops = [Worker(db, storage, settings, clock, f"{node}-w{i}")
                 for i in range(settings.pipeline.workers)]
        loops.append(WebhookSender(db, settings, clock, f"{node}-webhooks"))
        running.tasks = [asyncio.create_task(loop.run(self.stop)) for loop in loops]
        sweeper.wake()  # pick up whatever waited in the landing tree while we were down
        return running

    async def _start_sftp(self, changes: ChangeQueue, sweeper: Sweeper) -> SftpProcesses | None:
        sftp = self.settings.sftp
        if not sftp.enabled:
            return None

        def report(change: LandingChange) -> None:
            changes.submit(change)
            if change.kind == "landed":
                # Recorded by the queue: the filesystem event of its rename needs no look.
                sweeper.landing_reported(change.rel_path)

        running = await start_sftp_processes(self.settings, report, on_died=self._part_died)
        self.announce(f"ingestd: SFTP listening on {sftp.host}:{running.port}")
        return running

    def _part_died(self, reason: str) -> None:
        """A part the daemon cannot run without ended: stop, and exit with the reason."""
        log.error("daemon_part_died reason=%s", reason)
        self.failure = reason
        self.stop.set()

    async def _start_http(self, db: Database, intake: Intake, clock: Clock) -> HttpServer | None:
        if not self.settings.http.enabled:
            return None
        server = await start_http_server(self.settings, db, intake, clock)
        self.announce(f"ingestd: HTTP listening on {server.host}:{server.port}")
        return server

    async def _shutdown(self, running: Running) -> None:
        log.info("daemon_stopping")
        self.stop.set()
        if running.http is not None:
            await running.http.stop()
        if running.sftp is not None:
            # Closes open sessions too: their unfinished uploads are discarded, never landed.
            await running.sftp.stop()
        await running.sftp_changes.aclose()  # records what the SFTP processes reported last
        await running.watcher.aclose()  # before the sweeper: no wake after close
        stop_scheduler(running.scheduler)
        await running.sweeper.aclose()
        # Workers finish the stage they are in or release their call (lease cleared).
        pending: set[asyncio.Task] = set()
        if running.tasks:
            _, pending = await asyncio.wait(running.tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        running.db.dispose()
        log.info("daemon_stopped")


def serve(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Their INFO lines repeat every tick or migration check: noise next to our own events.
    for chatty in ("apscheduler", "alembic", "asyncssh"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # uvloop: the same asyncio API on libuv, measurably faster under SFTP load (bench/).
    uvloop.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    daemon = Daemon(settings, announce=lambda line: print(line, flush=True))
    loop = asyncio.get_running_loop()
    # Every asyncio.to_thread of the main process (rows, routing, pipeline writes) runs below the
    # SFTP processes' priority: an SFTP client waits for each answer, this work does not.
    loop.set_default_executor(ThreadPoolExecutor(
        thread_name_prefix="blocking", initializer=lower_thread_priority,
        initargs=(BACKGROUND_NICENESS,)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop.set)
    await daemon.run()


def _node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
