"""Large batches: routing keeps per-batch name indexes, import works a group of files at a time.

The grouping must not change what is decided: duplicates are found inside one group too, one
file's trouble never takes the others of its group down, a file finished elsewhere meanwhile is
not imported twice. The statement counts pin the grouping itself: routing or importing a batch
costs a few statements per chunk or group, not a few per file.
"""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_campaign
from sqlalchemy import event
from sqlmodel import select

from batch import routing
from batch.importer import Importer
from batch.lifecycle import Lifecycle
from batch.routing import Router
from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.models import Batch, BatchStatus, Call, Campaign, FileStatus, IngestFile
from ingestd.storage.local import LocalStorage

RATE = 8000  # 8 kHz 8-bit mono: 8,000 bytes a second


def wav(seed: int, seconds: float = 10.5) -> bytes:
    """A valid PCM WAV whose samples are unique to ``seed``."""
    data = random.Random(seed).randbytes(int(RATE * seconds))
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE, 1, 8)
            + b"data" + struct.pack("<I", len(data)) + data)


@dataclass
class Rig:
    db: Database
    clock: ManualClock
    settings: Settings
    campaign: Campaign

    def __post_init__(self) -> None:
        self.recorder = LandingRecorder(self.db, self.clock, 0, [])
        self.intake = Intake(self.db, LocalStorage(self.settings.storage_path),
                             self.settings.limits, self.clock)
        self.router = Router(self.db, self.clock, self.settings.landing_path)
        self.lifecycle = Lifecycle(self.db, self.clock)
        self.importer = Importer(self.db, self.intake, self.settings, self.clock)

    def land(self, name: str, content: bytes) -> None:
        path = self.settings.landing_path / "acme" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        stat = path.stat()
        self.recorder.landed(f"acme/{name}", stat.st_size, stat.st_mtime_ns)

    def batch_of(self, files: dict[str, bytes]) -> list[str]:
        """Land ``files`` with a manifest naming them, route them; the importable file ids."""
        for name, content in files.items():
            self.land(name, content)
        self.land("manifest.csv", "\n".join(["file_name", *files]).encode() + b"\n")
        self.router.route_ready()
        return self.lifecycle.importable()

    def files(self) -> dict[str, IngestFile]:
        with self.db.session() as session:
            return {f.name: f for f in session.exec(select(IngestFile))}

    def calls(self) -> list[Call]:
        with self.db.session() as session:
            return list(session.exec(select(Call)))

    def stored(self) -> list[Path]:
        return sorted(p for p in self.settings.storage_path.rglob("*") if p.is_file())


@pytest.fixture
def rig(any_db: Database, clock: ManualClock, settings: Settings) -> Rig:
    return Rig(any_db, clock, settings, make_campaign(any_db, clock, "acme"))


@contextmanager
def counted_statements(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_same_content_twice_in_one_group_imports_the_first_and_marks_the_second_duplicate(
        rig: Rig) -> None:
    ids = rig.batch_of({"a.wav": wav(1), "b.wav": wav(1), "c.wav": wav(2)})
    rig.importer.import_files(ids)
    files = rig.files()
    assert files["c.wav"].status == FileStatus.COMPLETED
    # a and b landed at the same instant: whichever of them came first is the original.
    first, second = sorted((files["a.wav"], files["b.wav"]), key=lambda f: f.status)
    assert (first.status, second.status) == (FileStatus.COMPLETED, FileStatus.DUPLICATE)
    assert "same content already imported" in (second.reason or "")
    calls = {c.id: c for c in rig.calls()}
    assert calls[second.call_id].duplicate_of == first.call_id
    assert len(rig.stored()) == 2  # the duplicate's bytes are not kept


def test_one_file_failing_its_group_transaction_leaves_only_itself_waiting(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = rig.batch_of({"a.wav": wav(1), "boom.wav": wav(2), "c.wav": wav(3)})
    record = Intake.record

    def failing(self, session, prepared, **kwargs):
        if any(p.sub.file_name == "boom.wav" for p in prepared):
            raise RuntimeError("database went away while recording boom.wav")
        return record(self, session, prepared, **kwargs)

    monkeypatch.setattr(Intake, "record", failing)
    rig.importer.import_files(ids)
    files = rig.files()
    assert files["a.wav"].status == files["c.wav"].status == FileStatus.COMPLETED
    assert files["boom.wav"].status == FileStatus.MATCHED and files["boom.wav"].call_id is None
    assert sorted(c.file_name for c in rig.calls()) == ["a.wav", "c.wav"]
    assert len(rig.stored()) == 2  # boom's stored bytes were removed again
    assert (rig.settings.landing_path / "acme" / "boom.wav").exists()  # waits for the next pass


def test_file_finished_by_another_sweep_meanwhile_gets_no_second_call(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = rig.batch_of({"a.wav": wav(1), "b.wav": wav(2)})
    prepare = Intake.prepare

    def and_another_node_imports_b(self, subs):
        prepared = prepare(self, subs)
        with rig.db.session() as session:  # another node committed b's import meanwhile
            row = session.exec(select(IngestFile).where(IngestFile.name == "b.wav")).one()
            row.status, row.call_id = FileStatus.COMPLETED.value, "call_elsewhere"
            session.add(row)
        return prepared

    monkeypatch.setattr(Intake, "prepare", and_another_node_imports_b)
    rig.importer.import_files(ids)
    files = rig.files()
    assert files["b.wav"].call_id == "call_elsewhere"
    assert [c.file_name for c in rig.calls()] == ["a.wav"]
    assert len(rig.stored()) == 1  # b's copy stored by this sweep was removed


def test_importing_a_group_costs_statements_per_group_not_per_file(rig: Rig) -> None:
    ids = rig.batch_of({f"r{i:03}.wav": wav(i) for i in range(60)})
    with counted_statements(rig.db) as statements:
        rig.importer.import_files(ids)
    assert all(f.status == FileStatus.COMPLETED for f in rig.files().values())
    assert len(rig.calls()) == 60
    # Per group: read rows, claim, campaign, agents, 3 duplicate lookups, insert, update.
    # One statement per file (let alone the ~10 of a file-by-file import) fails this.
    assert len(statements) < 40, statements


def test_routing_a_large_batch_costs_statements_per_chunk_not_per_file(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "ROUTE_CHUNK", 100)
    names = [f"r{i:03}.wav" for i in range(250)]
    for i, name in enumerate(names):
        rig.land(name, wav(i, seconds=0.01))  # routing does not read audio
    rig.land("manifest.csv", "\n".join(["file_name", *names]).encode() + b"\n")
    with counted_statements(rig.db) as statements:
        rig.router.route_ready()
    with rig.db.session() as session:
        (batch,) = session.exec(select(Batch)).all()
    assert batch.status == BatchStatus.PROCESSING  # complete across three chunks
    files = rig.files()
    assert all(files[n].status == FileStatus.MATCHED and files[n].batch_id == batch.id
               for n in names)
    assert len(statements) < 40, statements


def test_a_batch_closed_by_another_pass_meanwhile_is_not_closed_again(
        db: Database, clock: ManualClock, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(db, clock, settings, make_campaign(db, clock, "acme"))
    rig.importer.import_files(rig.batch_of({"a.wav": wav(1)}))
    with db.session() as session:
        (batch,) = session.exec(select(Batch)).all()
    assert batch.status == BatchStatus.PROCESSING
    closing = routing.engine.closing

    def and_the_other_pass_closes_it_first(files, missing):
        with db.session() as session:
            other = session.get(Batch, batch.id)
            other.status = BatchStatus.COMPLETED.value
            session.add(other)
        return closing(files, missing)

    monkeypatch.setattr(routing.engine, "closing", and_the_other_pass_closes_it_first)
    assert rig.lifecycle._close(batch.id) is None


def test_files_turning_stable_while_routing_runs_are_routed_by_the_same_call(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = LandingRecorder(rig.db, rig.clock, 2, [])  # stable two seconds after landing
    for name in ("a.wav", "manifest.csv"):
        path = rig.settings.landing_path / "acme" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"file_name\na.wav\nb.wav\n" if name.endswith(".csv") else wav(1))
        recorder.landed(f"acme/{name}", path.stat().st_size, path.stat().st_mtime_ns)
    rig.clock.advance(1)
    (rig.settings.landing_path / "acme" / "b.wav").write_bytes(wav(2))
    recorder.landed("acme/b.wav", 10, 1)  # stable one second after the others
    rig.clock.advance(1.5)  # a and the manifest are stable, b is not yet
    route_chunk = Router._route_chunk

    def and_time_passes(self, *args):
        finished = route_chunk(self, *args)
        rig.clock.advance(1)  # b turns stable while the first round routes
        return finished

    monkeypatch.setattr(Router, "_route_chunk", and_time_passes)
    rig.router.route_ready()
    files = rig.files()
    assert files["b.wav"].batch_id == files["a.wav"].batch_id is not None
    with rig.db.session() as session:
        (batch,) = session.exec(select(Batch)).all()
    assert batch.status == BatchStatus.PROCESSING


@pytest.mark.postgres
def test_two_nodes_importing_the_same_group_at_once_import_each_file_once(
        pg_db: Database, clock: ManualClock, settings: Settings) -> None:
    rig = Rig(pg_db, clock, settings, make_campaign(pg_db, clock, "acme"))
    ids = rig.batch_of({f"r{i:02}.wav": wav(i) for i in range(30)})
    other = Importer(pg_db, Intake(pg_db, LocalStorage(settings.storage_path), settings.limits,
                                   clock), settings, clock)
    start = threading.Barrier(2)

    def node(importer: Importer, order: list[str]) -> None:
        start.wait()
        importer.import_files(order)

    threads = [threading.Thread(target=node, args=(rig.importer, ids)),
               threading.Thread(target=node, args=(other, list(reversed(ids))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    files = rig.files()
    calls = rig.calls()
    assert {f.status for f in files.values() if f.kind == "audio"} == {FileStatus.COMPLETED}
    assert len(calls) == 30 and {c.status for c in calls} == {"PENDING"}
    assert sorted(f.call_id for f in files.values() if f.kind == "audio") == sorted(
        c.id for c in calls)
    assert len(rig.stored()) == 30  # the losing node's copies were removed
