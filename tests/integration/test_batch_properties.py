"""The batch engine's invariants under any arrival order (hypothesis).

Generated sequences of: audio and CSV arrivals across scopes and two campaigns (one with
``csv_mode = required``), overwrites of waiting files, duplicate content under other names,
uploads under temporary names renamed to their final name, renames of waiting files, restarts
(every sweep is a fresh ``Sweeper``: nothing may live in memory) and the clock moved past
deadlines. After every sweep, and after everything settled, the invariants of issue 3 hold:

- every file ends in a terminal status, with a reason where it is not ``COMPLETED`` (a file kept
  eligible by a required-CSV batch that failed waits ``DETECTED`` in that batch, by design);
- no content is imported twice in a campaign, no call exists twice for one file;
- every CSV row is matched to a file or listed as missing;
- no batch stays open past its deadline plus one sweep.

Audio is small synthetic PCM WAV (8 kHz, 10.5 s) so the real intake stays fast.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import tempfile
import wave
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from batch.sweeper import Sweeper
from ingestd.clock import ManualClock
from ingestd.config import load_settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.models import (
    OPEN_BATCH_STATUSES,
    Batch,
    Call,
    CallStatus,
    Campaign,
    FileStatus,
    IngestFile,
)
from ingestd.storage.local import LocalStorage

NAMES = ("a.wav", "b.wav", "c.wav", "short.wav", "notes.txt")
SCOPES = ("opt", "opt/day2", "req")  # "req" is a campaign with csv_mode = required
WINDOW = 60
TERMINAL = {s.value for s in (FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.DUPLICATE,
                              FileStatus.SKIPPED)}


@cache
def content(name: str, variant: int) -> bytes:
    """Distinct bytes per (name, variant); ``short.wav`` is valid audio but too short."""
    if name.endswith(".txt"):
        return f"notes {variant}\n".encode()
    seconds = 4.0 if name.startswith("short") else 10.5
    step = 2 * math.pi * (150 + 40 * NAMES.index(name) + 7 * variant) / 8000
    frames = b"".join(int(6000 * math.sin(i * step)).to_bytes(2, "little", signed=True)
                      for i in range(int(8000 * seconds)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return out.getvalue()


scopes = st.sampled_from(SCOPES)
names = st.sampled_from(NAMES)
actions = st.one_of(
    st.tuples(st.just("audio"), scopes, names, st.integers(0, 1)),
    st.tuples(st.just("copy"), scopes, names, st.sampled_from(("copy1.wav", "copy2.wav"))),
    st.tuples(st.just("csv"), scopes, st.lists(names, min_size=0, max_size=3, unique=True)),
    st.tuples(st.just("temp"), scopes, names, st.booleans()),
    st.tuples(st.just("rename"), scopes, names, st.sampled_from(("moved1.wav", "moved2.wav"))),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("advance"), st.sampled_from((5, 30, WINDOW + 1))),
)


@dataclass
class World:
    db: Database
    clock: ManualClock
    recorder: LandingRecorder
    landing: Path
    intake: Intake
    app_settings: object
    csvs: int = 0

    def sweep(self) -> None:
        asyncio.run(Sweeper(self.db, self.intake, self.recorder, self.app_settings,
                            self.clock).tick())
        assert_no_batch_open_past_its_deadline(self)

    def put(self, scope: str, name: str, data: bytes) -> None:
        target = self.landing / scope / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        stat = target.stat()
        self.recorder.landed(f"{scope}/{name}", stat.st_size, stat.st_mtime_ns)

    def rename(self, scope: str, old: str, new: str) -> None:
        """What the SFTP server does on RENAME: the old path is removed, the new one landed."""
        source = self.landing / scope / old
        if not source.exists():
            return
        target = source.with_name(new)
        os.replace(source, target)
        self.recorder.removed(f"{scope}/{old}")
        stat = target.stat()
        self.recorder.landed(f"{scope}/{new}", stat.st_size, stat.st_mtime_ns)

    def apply(self, action: tuple) -> None:
        kind = action[0]
        if kind == "audio":
            self.put(action[1], action[2], content(action[2], action[3]))
        elif kind == "copy":  # the same bytes under another name: a content duplicate
            self.put(action[1], action[3], content(action[2], 0))
        elif kind == "csv":
            self.csvs += 1
            rows = "".join(f"{n},REF-{action[1]}-{n}\n" for n in action[2])
            self.put(action[1], f"m{self.csvs}.csv", f"file_name,customer_id\n{rows}".encode())
        elif kind == "temp":  # uploaded under a temporary name, then renamed to its own
            self.put(action[1], f"{action[2]}.filepart", content(action[2], 1))
            if action[3]:
                self.sweep()
            self.rename(action[1], f"{action[2]}.filepart", action[2])
        elif kind == "rename":
            self.rename(action[1], action[2], action[3])
        elif kind == "sweep":
            self.sweep()
        else:
            self.clock.advance(action[1])


def assert_no_batch_open_past_its_deadline(world: World) -> None:
    now = world.clock.now()
    with world.db.session() as session:
        for batch in session.exec(select(Batch)):
            if batch.status in OPEN_BATCH_STATUSES:
                deadline = batch.deadline if batch.deadline.tzinfo else batch.deadline.replace(
                    tzinfo=now.tzinfo)
                assert deadline > now, (batch.id, batch.status, "open past its deadline")


def assert_settled_invariants(world: World) -> None:
    with world.db.session() as session:
        files = list(session.exec(select(IngestFile)))
        batches = {b.id: b for b in session.exec(select(Batch))}
        calls = list(session.exec(select(Call)))
        required = {c.id for c in session.exec(select(Campaign)) if c.csv_mode == "required"}
    for f in files:
        batch = batches.get(f.batch_id or "")
        assert batch is not None, (f.name, "belongs to no batch")
        if f.status == FileStatus.DETECTED and batch.status == "FAILED":
            assert f.campaign_id in required and f.kind == "audio", f
            continue  # kept eligible for a later CSV
        assert f.status in TERMINAL, (f.name, f.status, batch.status)
        assert f.status == FileStatus.COMPLETED or f.reason, (f.name, f.status)
        assert batch.status not in OPEN_BATCH_STATUSES and batch.status != "PROCESSING"
    imported = Counter((c.campaign_id, c.sha256) for c in calls
                       if c.status != CallStatus.DUPLICATE)
    assert all(n == 1 for n in imported.values()), "content imported twice"
    referenced = Counter(f.call_id for f in files if f.call_id)
    assert sorted(referenced) == sorted(c.id for c in calls), "a call without its file"
    assert all(n == 1 for n in referenced.values()), "two files share a call"
    assert_every_row_matched_or_missing(files, batches)


def assert_every_row_matched_or_missing(files: list[IngestFile], batches: dict) -> None:
    by_csv: dict[str, set[str]] = {}
    for batch in batches.values():
        if batch.csv_file_id:
            seen = by_csv.setdefault(batch.csv_file_id, set())
            seen.update(batch.missing)
            seen.update(f.name for f in files if f.batch_id == batch.id)
    for batch in batches.values():
        if batch.csv_file_id and batch.manifest_rows:
            named = {r["file_name"] for r in batch.manifest_rows}
            assert named <= by_csv[batch.csv_file_id], (batch.csv_file, named)


def make_world(root: Path) -> World:
    app_settings = load_settings(environ={"INGESTD_DATA_DIR": str(root / "var"),
                                          "INGESTD_SFTP__STABLE_SECONDS": "0"})
    db = Database(app_settings.database_url)
    db.migrate()
    clock = ManualClock()
    with db.session() as session:
        session.add(Campaign(name="Opt", slug="opt", batch_window=WINDOW, created_at=clock.now()))
        session.add(Campaign(name="Req", slug="req", batch_window=WINDOW, csv_mode="required",
                             created_at=clock.now()))
    recorder = LandingRecorder(db, clock, 0, app_settings.sftp.ignore_patterns)
    intake = Intake(db, LocalStorage(app_settings.storage_path), app_settings.limits, clock)
    return World(db, clock, recorder, app_settings.landing_path, intake, app_settings)


# Sequences every run covers besides the generated ones: a named file arriving after its batch
# closed; a CSV taking over an open CSV-less batch; a required-CSV batch failing, then bound.
LATE_FILE = [("csv", "opt", ["a.wav", "b.wav"]), ("audio", "opt", "b.wav", 0), ("sweep",),
             ("advance", WINDOW + 1), ("sweep",), ("audio", "opt", "a.wav", 0), ("sweep",)]
TAKEOVER = [("audio", "opt/day2", "a.wav", 0), ("temp", "opt/day2", "c.wav", True),
            ("sweep",), ("csv", "opt/day2", ["a.wav"]), ("copy", "opt/day2", "a.wav",
                                                         "copy1.wav"), ("sweep",)]
REQUIRED = [("audio", "req", "a.wav", 0), ("audio", "req", "notes.txt", 0), ("sweep",),
            ("advance", WINDOW + 1), ("sweep",), ("csv", "req", ["a.wav", "short.wav"]),
            ("audio", "req", "short.wav", 0), ("rename", "req", "a.wav", "moved1.wav")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=1, max_size=12))
@example(LATE_FILE)
@example(TAKEOVER)
@example(REQUIRED)
def test_any_arrival_order_keeps_the_batch_invariants(steps: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp))
        try:
            for step in steps:
                world.apply(step)
            for _ in range(3):  # settle: every window ends, every file is taken
                world.clock.advance(WINDOW + 1)
                world.sweep()
            assert_settled_invariants(world)
        finally:
            world.db.dispose()
