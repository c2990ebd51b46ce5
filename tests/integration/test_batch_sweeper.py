"""The sweeper end to end on SQLite: real corpus files in the landing tree, real intake (ffmpeg),
a manual clock for batch windows. Each test drives ``Sweeper.tick`` the way the daemon does."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_campaign
from sqlmodel import select

from batch import engine
from batch.sweeper import Sweeper
from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.landing import LandingRecorder
from ingestd.models import Batch, Call, IngestFile
from ingestd.storage.local import LocalStorage

SMALL = "20260120_KL003_outbound.mp3"
WEBM = "JD002 callback 1415.webm"
OGG = "réclamation 01.ogg"
HEADER = ("file_name,agent_name,agent_code,call_type,call_date,customer_id,disposition,"
          "client_reference")
ROWS = {
    SMALL: f"{SMALL},Kevin Lee,KL003,OUTBOUND,2026-01-20,CUST-101777,BROCHURE_SENT,NW-2026-000108",
    WEBM: (f"{WEBM},Julia Diaz,JD002,OUTBOUND,2026-01-18,CUST-101322,APPOINTMENT_BOOKED,"
           "NW-2026-000105"),
    "never_sent.mp3": "never_sent.mp3,Kevin Lee,KL003,INBOUND,2026-01-21,CUST-1,CALLBACK,NW-9",
}


@dataclass
class Rig:
    db: Database
    clock: ManualClock
    settings: Settings
    corpus: Path
    recorder: LandingRecorder

    def sweeper(self) -> Sweeper:
        """A fresh sweeper each time: state must live in the database, not in the object."""
        intake = Intake(self.db, LocalStorage(self.settings.storage_path), self.settings.limits,
                        self.clock)
        return Sweeper(self.db, intake, self.recorder, self.settings, self.clock)

    def tick(self) -> None:
        asyncio.run(self.sweeper().tick())

    def land(self, source: Path | bytes, name: str, scope: str = "acme") -> Path:
        """Put a file into the landing tree and record it as the SFTP server does."""
        target = self.settings.landing_path / scope / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        stat = target.stat()
        self.recorder.landed(f"{scope}/{name}", stat.st_size, stat.st_mtime_ns)
        return target

    def call(self, name: str) -> Path:
        return self.corpus / "calls" / name

    def csv(self, *names: str) -> bytes:
        return "\n".join([HEADER, *(ROWS[n] for n in names)]).encode() + b"\n"

    def batches(self) -> list[Batch]:
        with self.db.session() as session:
            return list(session.exec(select(Batch).order_by(Batch.created_at)))

    def files(self) -> dict[str, IngestFile]:
        with self.db.session() as session:
            return {f.name: f for f in session.exec(select(IngestFile))}

    def calls(self) -> dict[str, Call]:
        with self.db.session() as session:
            return {c.id: c for c in session.exec(select(Call))}


@pytest.fixture
def rig(any_db: Database, clock: ManualClock, settings: Settings, corpus: Path) -> Rig:
    recorder = LandingRecorder(any_db, clock, settings.sftp.stable_seconds,
                               settings.sftp.ignore_patterns)
    return Rig(any_db, clock, settings, corpus, recorder)


def only(batches: list[Batch]) -> Batch:
    assert len(batches) == 1, [(b.status, b.csv_file) for b in batches]
    return batches[0]


def test_csv_last_takes_over_and_completes_at_once(rig: Rig,
                                                   clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=600)
    small = rig.land(rig.call(SMALL), SMALL)
    rig.land(rig.call(WEBM), WEBM)
    rig.tick()
    assert only(rig.batches()).status == "DETECTING"
    rig.land(rig.csv(SMALL, WEBM), "manifest.csv")
    rig.tick()  # no clock advance: a complete CSV batch does not wait for its deadline
    batch = only(rig.batches())
    assert (batch.status, batch.csv_file, batch.reason) == ("COMPLETED", "manifest.csv", None)
    files = rig.files()
    assert {f.status for f in files.values()} == {"COMPLETED"}
    assert all(f.batch_id == batch.id for f in files.values())
    call = rig.calls()[files[SMALL].call_id]
    assert call.status == "PENDING"
    assert call.meta["client_reference"] == "NW-2026-000108"
    assert call.meta["agent_name"] == "Kevin Lee"
    assert not small.exists()  # landing copy removed after import (after_import = delete)
    assert not (rig.settings.landing_path / "acme" / "manifest.csv").exists()


def test_csv_first_then_audio(rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme")
    rig.land(rig.csv(SMALL, WEBM), "manifest.csv", scope="acme/2026-01-20")
    rig.tick()
    batch = only(rig.batches())
    assert (batch.status, batch.scope) == ("WAITING_FOR_FILES", "acme/2026-01-20")
    rig.land(rig.call(SMALL), SMALL, scope="acme/2026-01-20")
    rig.tick()
    assert only(rig.batches()).status == "WAITING_FOR_FILES"
    assert rig.files()[SMALL].status == "MATCHED"
    rig.land(rig.call(WEBM), WEBM, scope="acme/2026-01-20")
    rig.tick()
    assert only(rig.batches()).status == "COMPLETED"
    webm = rig.files()[WEBM]
    assert rig.calls()[webm.call_id].meta["disposition"] == "APPOINTMENT_BOOKED"


def test_no_csv_optional_waits_out_the_window(rig: Rig,
                                              clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=300)
    rig.land(rig.call(SMALL), SMALL)
    rig.tick()
    clock.advance(299)
    rig.tick()
    batch = only(rig.batches())
    assert batch.status == "DETECTING"
    assert rig.files()[SMALL].status == "DETECTED"
    clock.advance(2)
    rig.tick()
    batch = only(rig.batches())
    assert (batch.status, batch.reason, batch.missing) == ("COMPLETED", None, [])
    assert batch.closed_at is not None
    call = rig.calls()[rig.files()[SMALL].call_id]
    assert (call.status, call.meta, call.file_name) == ("PENDING", {}, SMALL)


def test_required_csv_fails_at_deadline_and_a_later_csv_binds_the_file(
        rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", csv_mode="required", batch_window=60)
    rig.land(rig.call(SMALL), SMALL)
    rig.tick()
    assert only(rig.batches()).status == "WAITING_FOR_CSV"
    clock.advance(61)
    rig.tick()
    failed = only(rig.batches())
    assert (failed.status, failed.reason) == ("FAILED", engine.CSV_REQUIRED_REASON)
    assert rig.files()[SMALL].status == "DETECTED"  # kept, still eligible
    assert rig.calls() == {}
    rig.land(rig.csv(SMALL), "late.csv")
    rig.tick()
    first, second = rig.batches()
    assert first.status == "FAILED"
    assert (second.status, second.csv_file) == ("COMPLETED", "late.csv")
    assert rig.files()[SMALL].batch_id == second.id


def test_missing_named_file_ends_incomplete(rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=60)
    rig.land(rig.csv(SMALL, "never_sent.mp3"), "manifest.csv")
    rig.land(rig.call(SMALL), SMALL)
    rig.tick()
    assert only(rig.batches()).status == "WAITING_FOR_FILES"
    clock.advance(60)
    rig.tick()
    batch = only(rig.batches())
    assert (batch.status, batch.missing) == ("INCOMPLETE", ["never_sent.mp3"])
    assert "never_sent.mp3" in (batch.reason or "")
    assert rig.files()[SMALL].status == "COMPLETED"


def test_unreadable_csv_fails_its_batch_and_binds_nothing(rig: Rig,
                                                          clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme")
    bad_csv = rig.corpus / "csv" / "manifest_missing_file_name.csv"
    rig.land(bad_csv, "manifest.csv")
    rig.land(rig.call(SMALL), SMALL)
    rig.tick()
    by_csv = {b.csv_file: b for b in rig.batches()}
    assert by_csv["manifest.csv"].status == "FAILED"
    assert "no file_name column" in (by_csv["manifest.csv"].reason or "")
    assert by_csv[None].status == "DETECTING"
    files = rig.files()
    assert files["manifest.csv"].status == "FAILED"
    assert files[SMALL].batch_id == by_csv[None].id
    moved = rig.settings.rejected_path / "acme" / f"{files['manifest.csv'].id}-manifest.csv"
    assert moved.read_bytes() == bad_csv.read_bytes()


def test_latin1_csv_matches_accented_names(rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme")
    rig.land(rig.corpus / "csv" / "manifest_latin1.csv", "manifest.csv")
    rig.land(rig.call(OGG), OGG)
    rig.tick()
    batch = only(rig.batches())
    assert batch.status == "WAITING_FOR_FILES"  # RB004 is not sent; réclamation matched
    ogg = rig.files()[OGG]
    assert ogg.status == "MATCHED"
    assert ogg.csv_row is not None and ogg.csv_row["agent_name"] == "Zoë Lefèvre"
    assert any("UTF-8" in w for w in rig.files()["manifest.csv"].warnings)


def test_unsupported_bad_and_duplicate_files(rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=10)
    rig.land(rig.corpus / "bad" / "bad_unsupported.txt", "notes.TXT")
    rig.land(rig.corpus / "bad" / "bad_too_short_4s.wav", "short.wav")
    rig.land(rig.call(SMALL), SMALL)
    rig.land(rig.call(SMALL), "copy of it.mp3")
    rig.tick()
    clock.advance(10)
    rig.tick()
    files = rig.files()
    assert (files["notes.TXT"].status, files["notes.TXT"].reason) == (
        "SKIPPED", "unsupported file type .txt")
    assert (files["short.wav"].status, files["short.wav"].reason) == (
        "FAILED", "too short: 4.0 s < 10 s")
    statuses = sorted([files[SMALL].status, files["copy of it.mp3"].status])
    assert statuses == ["COMPLETED", "DUPLICATE"]
    duplicate = next(f for f in files.values() if f.status == "DUPLICATE")
    assert "same content" in (duplicate.reason or "")
    batch = only(rig.batches())
    assert batch.status == "INCOMPLETE"
    assert "1 failed" in (batch.reason or "") and "1 skipped" in (batch.reason or "")
    rejected = sorted(p.name for p in (rig.settings.rejected_path / "acme").iterdir())
    assert rejected == sorted(f"{f.id}-{f.name}" for f in files.values()
                              if f.status in ("FAILED", "SKIPPED", "DUPLICATE"))
    assert list((rig.settings.landing_path / "acme").iterdir()) == []


def test_every_file_rejected_fails_the_batch(rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=10)
    rig.land(rig.corpus / "bad" / "bad_too_short_4s.wav", "short.wav")
    rig.tick()
    clock.advance(10)
    rig.tick()
    batch = only(rig.batches())
    assert batch.status == "FAILED"
    assert "every file was rejected" in (batch.reason or "")


def test_leftover_copy_after_crash_is_cleaned_not_reimported(rig: Rig,
                                                             clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=10)
    landed = rig.land(rig.call(SMALL), SMALL)
    kept = landed.read_bytes()
    mtime = landed.stat().st_mtime_ns
    rig.tick()
    clock.advance(10)
    rig.tick()
    assert not landed.exists()
    # The crash: the import committed but the landing copy was never removed.
    landed.write_bytes(kept)
    os.utime(landed, ns=(mtime, mtime))
    clock.advance(60)
    rig.tick()
    assert not landed.exists()
    assert len(rig.calls()) == 1
    assert len(rig.files()) == 1 and len(rig.batches()) == 1


def test_files_without_events_are_detected_once_stable(rig: Rig,
                                                       clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme")
    rig.settings.sftp.stable_seconds = 5
    rig.recorder.stable_seconds = 5
    dropped = rig.settings.landing_path / "acme" / "sub" / SMALL
    dropped.parent.mkdir(parents=True)
    shutil.copyfile(rig.call(SMALL), dropped)
    (dropped.parent / "upload.mp3.filepart").write_bytes(b"partial")
    (rig.settings.landing_path / "no-such-campaign").mkdir()
    (rig.settings.landing_path / "no-such-campaign" / SMALL).write_bytes(b"x")
    rig.tick()
    assert rig.files()[SMALL].batch_id is None  # seen, not yet stable
    clock.advance(3)
    with dropped.open("ab") as fh:
        fh.write(b"\0")  # still being written: pushes stability out again
    rig.tick()
    clock.advance(3)
    rig.tick()
    assert rig.files()[SMALL].batch_id is None
    clock.advance(3)
    rig.tick()
    files = rig.files()
    assert set(files) == {SMALL}
    assert files[SMALL].scope == "acme/sub"
    assert files[SMALL].batch_id == only(rig.batches()).id


def test_after_import_keep_leaves_the_landing_copy(rig: Rig,
                                                   clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=1)
    rig.settings.sftp.after_import = "keep"
    landed = rig.land(rig.call(SMALL), SMALL)
    rig.tick()
    clock.advance(1)
    rig.tick()
    rig.tick()
    assert landed.exists()
    assert rig.files()[SMALL].status == "COMPLETED"
    assert len(rig.calls()) == 1 and len(rig.files()) == 1
