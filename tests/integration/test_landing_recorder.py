"""The landing recorder: one active row per landing path, whoever records it and when."""

from __future__ import annotations

import threading

from conftest import make_campaign
from sqlmodel import select

from ingestd.landing import LandingRecorder
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
