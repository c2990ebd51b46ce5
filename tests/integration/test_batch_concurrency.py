"""Several sweepers on one PostgreSQL: routing decisions about one scope are serialised.

Two nodes that each see a ready file of the same scope with no open batch must not both open a
CSV-less batch: routing takes the scope's advisory lock before reading the scope's batches.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from conftest import make_campaign
from sqlmodel import select

from batch.routing import Router, lock_scope
from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.landing import LandingRecorder
from ingestd.models import Batch, IngestFile

pytestmark = pytest.mark.postgres


def _batches(db: Database) -> list[Batch]:
    with db.session() as session:
        return list(session.exec(select(Batch)))


def test_routing_waits_for_another_node_deciding_about_the_same_scope(
        pg_db: Database, clock: ManualClock, settings: Settings) -> None:
    campaign = make_campaign(pg_db, clock, "acme")
    LandingRecorder(pg_db, clock, 0, []).landed("acme/a.wav", 10, 1)
    router = Router(pg_db, clock, settings.landing_path)
    with pg_db.session() as session:
        lock_scope(session, campaign.id, "acme")  # another node is routing in this scope
        worker = threading.Thread(target=router.route_ready)
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "routing did not wait for the scope's lock"
        now = clock.now()
        other = Batch(campaign_id=campaign.id, scope="acme", status="DETECTING",
                      deadline=now + timedelta(seconds=600), created_at=now, updated_at=now)
        session.add(other)
    worker.join(10)
    assert [b.id for b in _batches(pg_db)] == [other.id]
    with pg_db.session() as session:
        (row,) = session.exec(select(IngestFile)).all()
    assert row.batch_id == other.id


class ReversedRouter(Router):
    """Walks the ready files backwards, so two routers work on different files at once."""

    def _ready(self) -> list:
        return list(reversed(super()._ready()))


def test_two_routers_routing_one_scope_at_once_open_one_batch(
        pg_db: Database, clock: ManualClock, settings: Settings) -> None:
    make_campaign(pg_db, clock, "acme")
    recorder = LandingRecorder(pg_db, clock, 0, [])
    for i in range(30):
        recorder.landed(f"acme/call_{i:02}.wav", 10, i)
    routers = [Router(pg_db, clock, settings.landing_path),
               ReversedRouter(pg_db, clock, settings.landing_path)]
    start = threading.Barrier(2)

    def route(router: Router) -> None:
        start.wait()
        router.route_ready()

    threads = [threading.Thread(target=route, args=(r,)) for r in routers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    (batch,) = _batches(pg_db)
    with pg_db.session() as session:
        batch_ids = {f.batch_id for f in session.exec(select(IngestFile))}
    assert batch_ids == {batch.id}
