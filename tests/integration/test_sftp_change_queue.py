"""The SFTP side's queue of landing changes: in order, grouped, and never in a client's way."""

from __future__ import annotations

import asyncio

from conftest import make_campaign
from sqlmodel import select

from ingestd.landing import LandingChange, LandingRecorder
from ingestd.models import IngestFile
from sftp_server.recording import ChangeQueue


class CountingRecorder(LandingRecorder):
    """Counts the transactions (``apply`` calls) and can be told to fail."""

    groups: list[int]
    fail = False

    def apply(self, changes):  # type: ignore[override]
        self.groups.append(len(changes))
        if self.fail:
            raise RuntimeError("database is down")
        return super().apply(changes)


def recorder_for(db, clock) -> CountingRecorder:
    recorder = CountingRecorder(db, clock, 2.0, ["*.filepart"])
    recorder.groups = []
    return recorder


def landed_rows(db) -> list[IngestFile]:
    with db.session() as session:
        return list(session.exec(select(IngestFile).order_by(IngestFile.name)))


def test_a_burst_is_written_in_few_transactions_in_order(db, clock) -> None:
    make_campaign(db, clock, "acme")
    recorder, woken = recorder_for(db, clock), []

    async def scenario() -> None:
        queue = ChangeQueue(recorder, lambda: woken.append(1))
        for i in range(50):
            queue.submit(LandingChange("landed", f"acme/f{i:02d}.wav", 100 + i, 1))
        # Removed after it landed: the order of the two changes decides that no row is left.
        queue.submit(LandingChange("removed", "acme/f00.wav"))
        await queue.recorded()
        await queue.aclose()

    asyncio.run(scenario())
    names = [row.name for row in landed_rows(db)]
    assert names == [f"f{i:02d}.wav" for i in range(1, 50)]
    assert sum(recorder.groups) == 51 and len(recorder.groups) <= 2
    assert len(woken) == len(recorder.groups)


def test_a_failed_write_fails_its_changes_and_the_queue_goes_on(db, clock) -> None:
    make_campaign(db, clock, "acme")
    recorder = recorder_for(db, clock)

    async def scenario() -> None:
        queue = ChangeQueue(recorder, lambda: None)
        recorder.fail = True
        lost = queue.submit(LandingChange("landed", "acme/a.wav", 10, 1))
        await queue.recorded()
        assert isinstance(lost.exception(), RuntimeError)
        recorder.fail = False
        kept = queue.submit(LandingChange("landed", "acme/b.wav", 10, 1))
        assert await kept is not None
        await queue.aclose()

    asyncio.run(scenario())
    assert [row.name for row in landed_rows(db)] == ["b.wav"]


def test_closing_writes_what_is_still_queued(db, clock) -> None:
    make_campaign(db, clock, "acme")
    recorder = recorder_for(db, clock)

    async def scenario() -> None:
        queue = ChangeQueue(recorder, lambda: None)
        for i in range(3):
            queue.submit(LandingChange("landed", f"acme/c{i}.wav", 10, 1))
        await queue.aclose()

    asyncio.run(scenario())
    assert len(landed_rows(db)) == 3
