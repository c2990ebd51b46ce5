"""Events of the landing tree and the ``[watch]`` drop folders; ``batch watch|cancel``.

The drop-folder poller is driven with a scripted monotonic clock; the event readers run for
real (inotify) against a real sweeper, waiting on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_campaign
from sqlmodel import select
from typer.testing import CliRunner

from batch.sweeper import Sweeper
from batch.watch import DropFolder, start_watching
from cli.app import app
from ingestd.clock import ManualClock, SystemClock
from ingestd.config import Settings, WatchFolder, load_settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.models import Batch, Campaign, IngestFile
from ingestd.storage.local import LocalStorage


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def rows(db: Database) -> list[IngestFile]:
    with db.session() as session:
        return list(session.exec(select(IngestFile)))


def test_drop_folder_file_is_moved_into_the_campaign_landing_folder_once_stable(
        db: Database, clock: ManualClock, settings: Settings, tmp_path: Path) -> None:
    make_campaign(db, clock, "acme")
    settings.sftp.stable_seconds = 2
    drop_root = tmp_path / "drop"
    (drop_root / "2026-01-15").mkdir(parents=True)
    dropped = drop_root / "2026-01-15" / "a.wav"
    dropped.write_bytes(b"RIFF-first")
    (drop_root / "b.wav.part").write_bytes(b"partial")
    ticks = Ticks()
    recorder = LandingRecorder(db, clock, 2, settings.sftp.ignore_patterns)
    drop = DropFolder(WatchFolder(path=str(drop_root), campaign="acme"), settings, recorder,
                      now=ticks)
    assert drop.poll() == []
    ticks.t += 1.5
    dropped.write_bytes(b"RIFF-still-growing")  # a change restarts the wait
    assert drop.poll() == []
    ticks.t += 1.9
    assert drop.poll() == []
    ticks.t += 0.2
    assert drop.poll() == ["acme/2026-01-15/a.wav"]
    landed = settings.landing_path / "acme" / "2026-01-15" / "a.wav"
    assert landed.read_bytes() == b"RIFF-still-growing" and not dropped.exists()
    (row,) = rows(db)
    assert (row.source, row.scope, row.name, row.size) == ("WATCH", "acme/2026-01-15", "a.wav",
                                                           18)
    assert (drop_root / "b.wav.part").exists()  # temporary names are left alone
    assert [p.name for p in landed.parent.iterdir()] == ["a.wav"]  # no staging file left


def test_drop_folder_of_an_unknown_campaign_is_left_alone(
        db: Database, clock: ManualClock, settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.wav").write_bytes(b"x")
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    drop = DropFolder(WatchFolder(path=str(tmp_path / "drop"), campaign="nope"), settings,
                      recorder)
    assert drop.poll() == []
    assert (tmp_path / "drop" / "a.wav").exists() and rows(db) == []


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_events_wake_the_sweeper_for_landing_files_and_take_drop_folder_files(
        db: Database, settings: Settings, tmp_path: Path) -> None:
    clock = SystemClock()
    make_campaign(db, clock, "acme")  # type: ignore[arg-type]
    settings.sweeper.interval_seconds = 3600  # no interval tick: only events can find files
    settings.watch.folders = [WatchFolder(path=str(tmp_path / "drop"), campaign="acme")]
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    sweeper = Sweeper(db, intake, recorder, settings, clock)

    async def scenario() -> None:
        handle = start_watching(settings, sweeper)
        try:
            copied = settings.landing_path / "acme" / "copied.csv"
            copied.parent.mkdir(parents=True, exist_ok=True)
            copied.write_bytes(b"file_name\nx.wav\n")
            await _until(lambda: any(r.name == "copied.csv" and r.batch_id for r in rows(db)),
                         10, "the copied CSV to be detected and routed")
            (tmp_path / "drop" / "dropped.csv").write_bytes(b"file_name\ny.wav\n")
            await _until(lambda: any(r.name == "dropped.csv" and r.batch_id for r in rows(db)),
                         10, "the dropped CSV to be taken and routed")
        finally:
            await handle.aclose()
            await sweeper.aclose()

    asyncio.run(scenario())
    by_name = {r.name: r for r in rows(db)}
    assert (by_name["copied.csv"].source, by_name["dropped.csv"].source) == ("SFTP", "WATCH")
    assert not (tmp_path / "drop" / "dropped.csv").exists()


def test_lost_events_make_the_next_pass_walk_the_whole_landing_tree(
        db: Database, settings: Settings) -> None:
    clock = SystemClock()
    make_campaign(db, clock, "acme")  # type: ignore[arg-type]
    settings.sweeper.interval_seconds = 3600  # no interval tick
    recorder = LandingRecorder(db, clock, 0, settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    sweeper = Sweeper(db, intake, recorder, settings, clock)

    async def scenario() -> None:
        try:
            await sweeper.tick()  # the start-up walk: nothing there yet
            unseen = settings.landing_path / "acme" / "unseen.csv"
            unseen.parent.mkdir(parents=True, exist_ok=True)
            unseen.write_bytes(b"file_name\nx.wav\n")  # no event reaches the sweeper
            sweeper.wake()
            await asyncio.sleep(0.5)
            assert rows(db) == [], "a pass without a walk found the file"
            sweeper.landing_events_lost()  # what the kernel's overflow notice leads to
            await _until(lambda: [r.name for r in rows(db)] == ["unseen.csv"], 10,
                         "the walk to record the file")
        finally:
            await sweeper.aclose()

    asyncio.run(scenario())


class ChangeLog:
    """Stands in for the sweeper: what the watcher handed over."""

    def __init__(self, recorder: LandingRecorder) -> None:
        self.recorder = recorder
        self.changed: list[str] = []

    def landing_changed(self, rel_path: str) -> None:
        self.changed.append(rel_path)

    def wake(self, delay: float) -> None:
        pass

    def landing_events_lost(self) -> None:
        pass


def test_reads_and_removals_of_landing_files_reach_no_event_handler(
        db: Database, settings: Settings) -> None:
    """An import reads each landing file twice and removes it: with 20,000 files those events
    cost the daemon 15 % of its busy time while nothing reacts to them. The kernel must not
    report them at all; a new file and a file moved in are still reported."""
    sweeper = ChangeLog(LandingRecorder(db, SystemClock(), 0, []))
    folder = settings.landing_path / "acme"
    folder.mkdir(parents=True)

    async def scenario() -> None:
        handle = start_watching(settings, sweeper)  # type: ignore[arg-type]
        try:
            (folder / "a.wav").write_bytes(b"RIFF")
            await _until(lambda: "acme/a.wav" in sweeper.changed, 10, "the new file's event")
            await asyncio.sleep(0.3)
            sweeper.changed.clear()
            for _ in range(2):
                assert (folder / "a.wav").read_bytes() == b"RIFF"
            (folder / "a.wav").unlink()
            await asyncio.sleep(0.5)
            assert sweeper.changed == [], "reads and a removal were reported"
            (settings.landing_path / "b.wav").write_bytes(b"RIFF")
            (settings.landing_path / "b.wav").rename(folder / "b.wav")
            await _until(lambda: "acme/b.wav" in sweeper.changed, 10, "the moved-in file")
        finally:
            await handle.aclose()

    asyncio.run(scenario())


@pytest.fixture
def cli_env(tmp_path: Path) -> tuple[Callable[..., str], Database, Settings]:
    config = tmp_path / "ingestd.toml"
    config.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    settings = load_settings(config)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--config", str(config), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output

    run("campaign", "create", "Acme", "--slug", "acme")
    database = Database(settings.database_url)
    yield run, database, settings
    database.dispose()


def _open_batch(database: Database, status: str = "WAITING_FOR_FILES") -> str:
    now = SystemClock().now()
    with database.session() as session:
        campaign_id = session.exec(select(Campaign.id)).one()  # the one the CLI created
        batch = Batch(campaign_id=campaign_id, scope="acme/day1", status=status,
                      csv_file="m.csv", csv_file_id="fil_csv",
                      manifest_rows=[{"file_name": n, "metadata": {}, "warnings": []}
                                     for n in ("a.wav", "b.wav")],
                      deadline=now + timedelta(seconds=90), created_at=now, updated_at=now)
        session.add(batch)
        session.add(IngestFile(campaign_id=campaign_id, scope="acme/day1", name="a.wav",
                               landing_path="acme/day1/a.wav", kind="audio", status="MATCHED",
                               batch_id=batch.id, created_at=now, updated_at=now))
    return batch.id


def test_batch_watch_once_prints_the_open_batches_with_their_counts(cli_env) -> None:
    run, database, _ = cli_env
    assert "(none)" in run("batch", "watch", "--once")
    batch_id = _open_batch(database)
    table = run("batch", "watch", "--once")
    header, line = table.strip().splitlines()
    assert header.split()[:6] == ["ID", "CAMPAIGN", "SCOPE", "STATUS", "CSV_FILE", "FILES"]
    assert line.split()[:10] == [batch_id, "acme", "acme/day1", "WAITING_FOR_FILES", "m.csv",
                                 "1", "1", "0", "0", "1"]
    (row,) = json.loads(run("batch", "watch", "--once", "--json"))
    assert (row["id"], row["waiting"], row["missing"]) == (batch_id, 1, 1)
    assert 80 <= row["seconds_left"] <= 90


def test_batch_cancel_from_the_cli_ends_the_batch_cancelled(cli_env) -> None:
    run, database, _ = cli_env
    batch_id = _open_batch(database)
    assert "1 file(s) not yet imported skipped" in run("batch", "cancel", batch_id)
    shown = json.loads(run("batch", "show", batch_id, "--json"))
    assert (shown["status"], shown["reason"], shown["missing"]) == (
        "CANCELLED", "cancelled by an operator", ["b.wav"])
    assert shown["files"][0]["status"] == "SKIPPED"
    assert json.loads(run("batch", "watch", "--once", "--json")) == []


def test_batch_retry_from_the_cli_rebinds_a_failed_file_whose_bytes_are_kept(cli_env) -> None:
    run, database, settings = cli_env
    batch_id = _open_batch(database, status="INCOMPLETE")
    with database.session() as session:
        row = session.exec(select(IngestFile)).one()
        row.status, row.reason = "FAILED", "too short: 4.0 s < 10 s"
        row.csv_row = {"customer_id": "C-1"}
        session.add(row)
    kept = settings.rejected_path / "acme/day1" / f"{row.id}-a.wav"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"kept bytes")
    new = json.loads(run("batch", "retry", batch_id, "--json"))
    assert (new["status"], new["scope"], new["csv_file"]) == ("PROCESSING", "acme/day1", "m.csv")
    assert [(f["name"], f["status"]) for f in new["files"]] == [("a.wav", "MATCHED")]
    moved = list((settings.landing_path / "acme/day1/.retry").iterdir())
    assert [p.read_bytes() for p in moved] == [b"kept bytes"] and not kept.exists()
    old = json.loads(run("batch", "show", batch_id, "--json"))
    assert old["files"][0]["reason"] == f"too short: 4.0 s < 10 s (retried in batch {new['id']})"
