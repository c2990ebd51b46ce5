"""Triggering the sweeper: ``wake`` after a landing (coalesced) and the apscheduler interval."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_campaign
from sqlmodel import select

from batch.schedule import start_scheduler, stop_scheduler
from batch.sweeper import Sweeper
from ingestd.clock import ManualClock, SystemClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.models import Batch, IngestFile
from ingestd.storage.local import LocalStorage

CSV = b"file_name,agent_code\nlater.mp3,KL003\n"


class CountingSweeper(Sweeper):
    """Counts the passes that really ran (``passes``: started, ``finished``: ended)."""

    passes = finished = 0

    async def _route_pass(self) -> None:
        self.passes += 1
        await super()._route_pass()
        self.finished += 1


@pytest.fixture
def sweeper(db: Database, clock: ManualClock, settings: Settings) -> CountingSweeper:
    make_campaign(db, clock, "acme")
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    return CountingSweeper(db, intake, recorder, settings, clock)


def drop_csv(settings: Settings) -> None:
    """A file that appears without any event: only a tick's scan can find it."""
    target = settings.landing_path / "acme" / "manifest.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(CSV)


def routed(db: Database) -> bool:
    with db.session() as session:
        rows = list(session.exec(select(IngestFile)))
    return len(rows) == 1 and rows[0].batch_id is not None


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_repeated_wakes_coalesce_into_one_tick(sweeper: CountingSweeper, db: Database,
                                               settings: Settings) -> None:
    async def scenario() -> None:
        drop_csv(settings)
        for _ in range(5):
            sweeper.wake(0.05)
        await wait_for(lambda: routed(db))
        await sweeper.aclose()
    asyncio.run(scenario())
    assert sweeper.passes == 1


def test_a_wake_due_much_later_gets_its_own_tick(sweeper: CountingSweeper) -> None:
    async def scenario() -> None:
        sweeper.wake(0.0)
        sweeper.wake(0.4)
        await wait_for(lambda: sweeper.passes == 2)
        await sweeper.aclose()
    asyncio.run(scenario())
    assert sweeper.passes == 2


def test_a_wake_during_a_tick_runs_one_more_tick_after_it(sweeper: CountingSweeper,
                                                          db: Database,
                                                          settings: Settings) -> None:
    async def scenario() -> None:
        running = asyncio.create_task(sweeper.tick())
        await asyncio.sleep(0)  # the tick holds the lock now
        drop_csv(settings)
        sweeper.landing_changed("acme/manifest.csv")  # the watcher's event for the new file
        sweeper.wake()
        await running
        await wait_for(lambda: sweeper.passes == 2)
        await sweeper.aclose()
    asyncio.run(scenario())
    assert sweeper.passes == 2
    assert routed(db)


def test_a_wake_looks_only_at_the_paths_events_named(sweeper: CountingSweeper, db: Database,
                                                    settings: Settings) -> None:
    async def scenario() -> None:
        await sweeper.tick()  # the start-up walk of the whole tree
        drop_csv(settings)  # no event names it: left for the next interval tick's walk
        sweeper.wake()
        await wait_for(lambda: sweeper.passes == 2)
        assert not routed(db)
        sweeper.landing_changed("acme/manifest.csv")
        await wait_for(lambda: routed(db))
        await sweeper.aclose()
    asyncio.run(scenario())


def test_an_event_for_a_path_the_sftp_server_reported_is_not_looked_at_again(
        sweeper: CountingSweeper, db: Database, settings: Settings) -> None:
    """The SFTP side records its own landings; its rename's event must not record them twice
    (from two threads at once, which made one side retry its group change by change)."""
    async def scenario() -> None:
        await sweeper.tick()
        drop_csv(settings)
        sweeper.landing_reported("acme/manifest.csv")  # its row is the change queue's job
        sweeper.landing_changed("acme/manifest.csv")  # no look, and no wake of its own
        await asyncio.sleep(0.3)
        assert sweeper.passes == 1
        sweeper.wake()  # a pass for other reasons does not look at it either
        await wait_for(lambda: sweeper.finished == 2)
        assert not routed(db)  # nobody recorded it here: the event was not looked at
        # Two passes later the report is forgotten and an event is looked at again.
        sweeper.wake()
        await wait_for(lambda: sweeper.finished == 3)
        sweeper.landing_changed("acme/manifest.csv")
        await wait_for(lambda: routed(db))
        await sweeper.aclose()
    asyncio.run(scenario())


def test_a_steady_stream_of_wakes_never_postpones_a_pass_for_long(db: Database, clock,
                                                                  settings: Settings) -> None:
    """An upload every 0.1 s, each asking for a pass 0.5 s later (its file turns stable then):
    passes keep coming about every WAKE_SLACK_SECONDS, never seconds apart."""
    make_campaign(db, clock, "acme")
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    times: list[float] = []

    class TimedSweeper(Sweeper):
        async def _route_pass(self) -> None:
            times.append(asyncio.get_running_loop().time())

    async def scenario() -> None:
        sweeper = TimedSweeper(db, intake, recorder, settings, clock)
        start = asyncio.get_running_loop().time()
        for _ in range(20):
            sweeper.wake(0.5)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await sweeper.aclose()
        times.insert(0, start + 0.5)  # the first wake's due time
    asyncio.run(scenario())
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) > 5 and max(gaps) < 0.5, gaps


def test_a_wake_due_now_is_not_held_back_by_a_later_pending_one(sweeper: CountingSweeper) -> None:
    async def scenario() -> float:
        sweeper.wake(5.0)
        started = asyncio.get_running_loop().time()
        sweeper.wake(0.0)
        await wait_for(lambda: sweeper.passes == 1, timeout=1.0)
        elapsed = asyncio.get_running_loop().time() - started
        await sweeper.aclose()
        return elapsed
    assert asyncio.run(scenario()) < 0.5


def test_scheduler_ticks_on_its_interval(sweeper: CountingSweeper, db: Database,
                                         settings: Settings) -> None:
    async def scenario() -> None:
        scheduler = start_scheduler(sweeper, interval_seconds=0.05)
        try:
            assert scheduler.running
            drop_csv(settings)
            await wait_for(lambda: routed(db) and sweeper.passes >= 2)
        finally:
            stop_scheduler(scheduler)
        await wait_for(lambda: not scheduler.running)
    asyncio.run(scenario())


def test_apscheduler_is_imported_only_by_the_schedule_module() -> None:
    package = Path(__file__).resolve().parents[2] / "batch"
    importers = sorted(p.name for p in package.glob("*.py") if "apscheduler" in p.read_text())
    assert importers == ["schedule.py"]


def test_landing_copy_of_a_removed_tree_is_ignored(sweeper: CountingSweeper,
                                                   settings: Settings) -> None:
    drop_csv(settings)
    shutil.rmtree(settings.landing_path)
    asyncio.run(sweeper.tick())  # a landing tree that is gone is simply empty
    assert sweeper.passes == 1


def test_a_pass_wakes_itself_when_a_window_ends_before_the_next_interval(
        db: Database, settings: Settings) -> None:
    clock = SystemClock()
    make_campaign(db, clock, "acme", batch_window=1)  # type: ignore[arg-type]
    settings.sweeper.interval_seconds = 3600  # no interval tick within the test
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    woken = CountingSweeper(db, intake, recorder, settings, clock)

    def closed() -> bool:
        with db.session() as session:
            return [b.status for b in session.exec(select(Batch))] == ["FAILED"]

    async def scenario() -> None:
        drop_csv(settings)  # names a file that never comes: the window has to end
        await woken.tick()
        assert not closed()
        await wait_for(closed, timeout=5)
        await woken.aclose()
    asyncio.run(scenario())
    assert woken.passes == 2
