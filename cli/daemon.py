"""The composition root: builds every part of the daemon and runs them in one asyncio loop.

This is the only place that knows all the parts (SFTP server, sweeper and scheduler, pipeline
workers) and the only place with ``asyncio.run``. The parts never call each other: the SFTP
server records file rows and pokes the sweeper through the ``on_landed`` callback wired here; the
sweeper creates ``PENDING`` calls that the workers claim from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from batch.schedule import start_scheduler, stop_scheduler
from batch.sweeper import Sweeper
from batch.watch import start_watching
from ingestd.clock import SystemClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.storage import build_storage
from pipeline.delivery import WebhookSender
from pipeline.worker import Worker
from sftp_server.server import start_sftp_server, stop_sftp_server

log = logging.getLogger("ingestd.daemon")
SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass
class Daemon:
    """Everything ``serve`` runs; :meth:`run` returns after a stop signal and a clean shutdown."""

    settings: Settings
    announce: Callable[[str], None] = print
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        settings, clock = self.settings, SystemClock()
        db = Database(settings.database_url)
        await asyncio.to_thread(db.migrate)
        storage = build_storage(settings)
        recorder = LandingRecorder(db, clock, settings.sftp.stable_seconds,
                                   settings.sftp.ignore_patterns)
        sweeper = Sweeper(db, Intake(db, storage, settings.limits, clock), recorder, settings,
                          clock)
        scheduler = start_scheduler(sweeper, settings.sweeper.interval_seconds)
        watcher = start_watching(settings, sweeper)
        acceptor = await self._start_sftp(db, recorder, sweeper)
        workers = [Worker(db, storage, settings, clock, f"{_node_name()}-w{i}")
                   for i in range(settings.pipeline.workers)]
        worker_tasks = [asyncio.create_task(w.run(self.stop)) for w in workers]
        sender = WebhookSender(db, settings, clock, f"{_node_name()}-webhooks")
        worker_tasks.append(asyncio.create_task(sender.run(self.stop)))
        sweeper.wake()  # pick up whatever waited in the landing tree while we were down
        self.announce(f"ingestd: running (data in {settings.data_path.resolve()}); "
                      "Ctrl-C or SIGTERM stops it")
        try:
            await self.stop.wait()
        finally:
            await self._shutdown(acceptor, scheduler, watcher, sweeper, worker_tasks, db)

    async def _start_sftp(self, db: Database, recorder: LandingRecorder, sweeper: Sweeper) -> Any:
        sftp = self.settings.sftp
        if not sftp.enabled:
            return None
        acceptor = await start_sftp_server(self.settings, db, recorder,
                                           on_landed=lambda: sweeper.wake(sftp.stable_seconds))
        self.announce(f"ingestd: SFTP listening on {sftp.host}:{acceptor.get_port()}")
        return acceptor

    async def _shutdown(self, acceptor: Any, scheduler: Any, watcher: Any, sweeper: Sweeper,
                        worker_tasks: list[asyncio.Task], db: Database) -> None:
        log.info("daemon_stopping")
        self.stop.set()
        if acceptor is not None:
            # Closes open sessions too: their unfinished uploads are discarded, never landed.
            with suppress(TimeoutError):
                await asyncio.wait_for(stop_sftp_server(acceptor), SHUTDOWN_GRACE_SECONDS)
        await asyncio.to_thread(watcher.stop)  # before the sweeper: no wake after its close
        stop_scheduler(scheduler)
        await sweeper.aclose()
        # Workers finish the stage they are in or release their call (lease cleared).
        pending: set[asyncio.Task] = set()
        if worker_tasks:
            _, pending = await asyncio.wait(worker_tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        db.dispose()
        log.info("daemon_stopped")


def serve(settings: Settings) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Their INFO lines repeat every tick or migration check: noise next to our own events.
    for chatty in ("apscheduler", "alembic", "asyncssh"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    daemon = Daemon(settings, announce=lambda line: print(line, flush=True))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop.set)
    await daemon.run()


def _node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
