"""The landing recorder: one active row per landing path, whoever records it and when."""

from __future__ import annotations

import threading

from conftest import make_campaign
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from ingestd.landing import LandingChange, LandingRecorder
from ingestd.models import IngestFile


def test_concurrent_records_of_one_path_make_one_row(any_db, clock, settings):
    db = any_db
    """The SFTP close and the sweeper's scan can both record a file that just landed."""
    make_campaign(db, clock, "acme")
    recorder = LandingRecorder(db, clock, 0.0, settings.sftp.ignore_patterns)
    for attempt in range(40):
        path = f"acme/race-{attempt}.wav"
        start = threading.Barrier(4)

        def record(path=path, start=start):
            start.wait()
            recorder.landed(path, 1000, 1)

        threads = [threading.Thread(target=record) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with db.session() as session:
            rows = session.exec(select(IngestFile).where(IngestFile.landing_path == path)).all()
        assert len(rows) == 1, f"attempt {attempt}: {len(rows)} rows for one landed file"


def test_changes_of_one_group_apply_in_their_order(db, clock, settings):
    make_campaign(db, clock, "acme")
    recorder = LandingRecorder(db, clock, 5.0, settings.sftp.ignore_patterns)
    recorder.landed("acme/a.wav", 10, 1)  # waiting from an earlier group
    recorder.landed("acme/old.wav", 10, 1)
    ids = recorder.apply([
        LandingChange("writing", "acme/a.wav"),  # a rewrite of it starts
        LandingChange("landed", "acme/b.wav", 20, 2),
        LandingChange("removed", "acme/b.wav"),  # gone again within the group
        LandingChange("landed", "acme/c.wav", 30, 3),
        LandingChange("writing", "acme/c.wav"),
        LandingChange("landed", "acme/c.wav", 31, 4),  # its rewrite finished
        LandingChange("removed", "acme/old.wav"),
        LandingChange("landed", "acme/x.wav.filepart", 1, 1),  # a temporary name: no row
        LandingChange("landed", "nope/d.wav", 1, 1),  # no such campaign
    ])
    with db.session() as session:
        rows = {r.landing_path: r for r in session.exec(select(IngestFile))}
    assert set(rows) == {"acme/a.wav", "acme/c.wav"}
    assert rows["acme/a.wav"].stable_at is None and rows["acme/a.wav"].size == 10
    assert rows["acme/c.wav"].size == 31 and rows["acme/c.wav"].stable_at is not None
    assert ids[1] is not None and ids[3] == ids[5] == rows["acme/c.wav"].id
    assert ids[0] is None and ids[7] is None and ids[8] is None


def test_landing_again_refreshes_the_waiting_row(db, clock, settings):
    make_campaign(db, clock, "acme")
    recorder = LandingRecorder(db, clock, 5.0, settings.sftp.ignore_patterns)
    first = recorder.landed("acme/a.wav", 10, 1)
    assert recorder.landed("acme/a.wav", 12, 2) == first
    with db.session() as session:
        [row] = session.exec(select(IngestFile)).all()
    assert (row.id, row.size, row.mtime_ns) == (first, 12, 2)


def test_a_group_that_loses_a_race_is_applied_again_whole(db, clock, settings):
    """One lost path must not cost one transaction per change of a 500-change group."""
    make_campaign(db, clock, "acme")
    other = LandingRecorder(db, clock, 0.0, settings.sftp.ignore_patterns)

    class LosingOnce(LandingRecorder):
        transactions = 0

        def _apply(self, changes):
            self.transactions += 1
            if self.transactions == 1:
                # The other writer commits the same path between our read and our insert.
                other.landed("acme/f003.wav", 7, 1)
                raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
            return super()._apply(changes)

    recorder = LosingOnce(db, clock, 0.0, settings.sftp.ignore_patterns)
    ids = recorder.apply([LandingChange("landed", f"acme/f{i:03d}.wav", 10, 1)
                          for i in range(100)])
    assert recorder.transactions == 2
    with db.session() as session:
        rows = {r.landing_path: r for r in session.exec(select(IngestFile))}
    assert len(rows) == 100 and all(file_id is not None for file_id in ids)
    assert ids[3] == rows["acme/f003.wav"].id and rows["acme/f003.wav"].size == 10
