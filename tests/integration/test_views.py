"""The JSON views: a batch's files and their calls are read in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

from conftest import make_campaign
from sqlalchemy import event

from ingestd.clock import ManualClock
from ingestd.db import Database
from ingestd.models import Batch, Call, IngestFile
from ingestd.views import batch_view


def test_batch_view_reads_its_files_and_their_calls_in_a_fixed_number_of_queries(
        db: Database, clock: ManualClock) -> None:
    campaign = make_campaign(db, clock, "acme")
    now = clock.now()
    with db.session() as session:
        batch = Batch(campaign_id=campaign.id, scope="acme", status="COMPLETED",
                      deadline=now + timedelta(seconds=60), created_at=now, updated_at=now)
        session.add(batch)
        for i in range(30):
            call = Call(campaign_id=campaign.id, source="SFTP", status="COMPLETED",
                        file_name=f"f{i}.wav", sha256=f"hash{i}", created_at=now,
                        updated_at=now)
            session.add(call)
            session.add(IngestFile(
                campaign_id=campaign.id, scope="acme", name=f"f{i}.wav",
                landing_path=f"acme/f{i}.wav", kind="audio", status="COMPLETED",
                batch_id=batch.id, call_id=call.id, created_at=now + timedelta(seconds=i),
                updated_at=now))
        session.add(IngestFile(campaign_id=campaign.id, scope="acme", name="notes.txt",
                               landing_path="acme/notes.txt", kind="other", status="SKIPPED",
                               batch_id=batch.id, created_at=now + timedelta(seconds=99),
                               updated_at=now))
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))
    with db.session() as session:
        view = batch_view(session, session.get(Batch, batch.id))
    files = view["files"]
    assert [f["name"] for f in files] == [*(f"f{i}.wav" for i in range(30)), "notes.txt"]
    assert (files[3]["sha256"], files[3]["call_status"]) == ("hash3", "COMPLETED")
    assert (files[-1]["call_id"], files[-1]["call_status"]) == (None, None)
    assert len(statements) <= 4, statements  # batch, campaign, files with calls: not one per file
