"""Growth: does a sweep cost the same with a million files and calls as with none?

Runs the product's own sweeper in this process (``batch.sweeper.Sweeper`` over
``ingestd.db.Database``, the same code the daemon runs) against SQLite and PostgreSQL. For each
database: time an idle tick and a new 10-file CSV batch (scan, route, import, close, ticks run
back to back until it is ``COMPLETED``) on the empty schema; bulk-insert N old batches' worth of
``COMPLETED`` files and calls and an open batch of N/50 files still waiting
(``growth_fixture``); time both again. Every statement the hot
path ran is captured and its plan printed (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``); a plan that
scans a growing table without an index is listed as a finding.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from pathlib import Path

import growth_fixture
import recordings
from figures import Figure
from sqlalchemy import event, text

from batch.sweeper import Sweeper
from ingestd.clock import SystemClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.storage import build_storage

log = logging.getLogger("bench.growth")
IDLE_TICKS = 9
BATCH_FILES = 10
GROWING = ("files", "calls", "batches", "call_versions")
SQLITE_SCAN = re.compile(r"\bSCAN (\w+)\b(?! USING)")
PG_SCAN = re.compile(r"Seq Scan on (\w+)")
# The bench's own poll of the new batch: not part of the product's hot path.
BENCH_STATUS_SQL = "SELECT status FROM batches WHERE scope = :s"


def run(work: Path, rows: int, pg_url: str | None) -> list[Figure]:
    found: list[Figure] = []
    targets = [("SQLite", f"sqlite:///{work / 'sqlite' / 'ingestd.db'}")]
    if pg_url:
        targets.append(("PostgreSQL", pg_url))
    for label, url in targets:
        try:
            growth_fixture.reset(url)
        except Exception as exc:  # no server: say so in the table and go on
            found.append(Figure(f"growth {label}", None, "", note=f"not measured: {exc}"))
            continue
        found.extend(asyncio.run(_measure(label, url, work / label.lower(), rows)))
    return found


async def _measure(label: str, url: str, root: Path, rows: int) -> list[Figure]:
    settings = Settings(data_dir=str(root), database={"url": url}, sftp={"stable_seconds": 0})
    db = Database(url)
    db.migrate()
    clock = SystemClock()
    campaign_id = growth_fixture.campaign(db)
    recorder = LandingRecorder(db, clock, 0.0, settings.sftp.ignore_patterns)
    sweeper = Sweeper(db, Intake(db, build_storage(settings), settings.limits, clock), recorder,
                      settings, clock)
    await sweeper.tick()  # first-use costs (connections, statement caches) out of the way
    empty_idle = await _idle(sweeper)
    empty_batch = await _new_batch(sweeper, db, settings, "empty")
    log.info("growth %s: inserting %d files and calls", label, rows)
    began = time.monotonic()
    growth_fixture.fill(db, campaign_id, rows)
    log.info("growth %s: fixture in %.0f s", label, time.monotonic() - began)
    with StatementLog(db) as statements:
        full_idle = await _idle(sweeper)
        full_batch = await _new_batch(sweeper, db, settings, "full")
    plans, scans = explain(db, statements.seen)
    db.dispose()
    n = f"{rows:,}"  # and rows // WAITING_SHARE waiting files
    return [
        Figure(f"growth {label}: idle sweep, {n} rows vs empty", full_idle * 1000, "ms",
               peer=empty_idle * 1000, target="<= 2x", passed=full_idle <= 2 * empty_idle,
               note=f"{len(scans)} hot-path statements scan a growing table: {scans or 'none'}",
               details=plans),
        Figure(f"growth {label}: new {BATCH_FILES}-file batch, {n} rows vs empty",
               full_batch * 1000, "ms", peer=empty_batch * 1000, target="<= 2x",
               passed=full_batch <= 2 * empty_batch),
    ]


async def _idle(sweeper: Sweeper) -> float:
    times = []
    for _ in range(IDLE_TICKS):
        began = time.perf_counter()
        await sweeper.tick()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def _new_batch(sweeper: Sweeper, db: Database, settings: Settings, tag: str) -> float:
    """Seconds of back-to-back ticks from a complete 10-file CSV batch landing to COMPLETED."""
    scope = f"growth/new-{tag}"
    folder = settings.landing_path / scope
    files = recordings.make_set(folder, BATCH_FILES, recordings.smallest_valid_bytes(),
                                seed=hash(tag) & 0xFFFF, prefix=f"new-{tag}")
    recordings.write_manifest(folder / "manifest.csv", [f.name for f in files])
    began = time.perf_counter()
    for _ in range(20):
        await sweeper.tick()
        with db.engine.connect() as conn:
            status = conn.execute(text(BENCH_STATUS_SQL), {"s": scope}).scalar()
        if status == "COMPLETED":
            return time.perf_counter() - began
    raise RuntimeError(f"the new batch in {scope} did not complete (status {status})")


class StatementLog:
    """Every distinct SELECT/UPDATE/DELETE run through the engine while recording (first
    parameters kept, for EXPLAIN)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: dict[str, object] = {}

    def __enter__(self) -> StatementLog:
        event.listen(self.db.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.db.engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, parameters, _context, executemany) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if head in ("SELECT", "UPDATE", "DELETE") and not executemany \
                and not statement.startswith("SELECT status FROM batches WHERE scope ="):
            self.seen.setdefault(statement, parameters)


def explain(db: Database, statements: dict[str, object]) -> tuple[list[str], list[str]]:
    """Each captured statement with its plan; and the tables scanned without an index."""
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    pattern = SQLITE_SCAN if db.is_sqlite else PG_SCAN
    lines: list[str] = []
    scans: list[str] = []
    with db.engine.connect() as conn:
        for statement, params in statements.items():
            plan_rows = conn.exec_driver_sql(prefix + statement, params).fetchall()
            plan = [str(r[-1]) for r in plan_rows]
            flat = " ".join(statement.split())
            lines.append(f"> {flat[:300]}")
            lines.extend(f"    {p}" for p in plan)
            for match in pattern.finditer("\n".join(plan)):
                if match.group(1) in GROWING:
                    scans.append(f"{match.group(1)} in '{flat[:80]}…'")
    return lines, sorted(set(scans))
