"""Claiming calls for the pipeline: each call to exactly one worker, leases honoured."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import make_campaign

from ingestd.models import Call, CallStatus


def _add_calls(db, clock, campaign, count, **fields):
    now = clock.now()
    with db.session() as session:
        for i in range(count):
            session.add(Call(id=f"call_{i:03d}", campaign_id=campaign.id, source="SFTP",
                             file_name=f"f{i}.wav", created_at=now, updated_at=now,
                             **{"queued": True, **fields}))


def test_each_call_is_claimed_once(any_db, clock):
    campaign = make_campaign(any_db, clock)
    _add_calls(any_db, clock, campaign, 5)
    first = any_db.claim_calls("w1", clock.now(), 60, limit=3)
    second = any_db.claim_calls("w2", clock.now(), 60, limit=3)
    assert len(first) == 3 and len(second) == 2
    assert not set(first) & set(second)
    assert any_db.claim_calls("w3", clock.now(), 60) == []


def test_concurrent_claims_never_overlap(any_db, clock):
    campaign = make_campaign(any_db, clock)
    _add_calls(any_db, clock, campaign, 40)
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda i: [c for _ in range(20) for c in
                                           any_db.claim_calls(f"w{i}", clock.now(), 60)],
                                range(4)))
    claimed = [c for batch in batches for c in batch]
    assert sorted(claimed) == sorted(set(claimed))
    assert len(claimed) == 40


def test_expired_lease_is_taken_over(any_db, clock):
    campaign = make_campaign(any_db, clock)
    _add_calls(any_db, clock, campaign, 1)
    assert any_db.claim_calls("dead", clock.now(), 30) == ["call_000"]
    with any_db.session() as session:
        session.get(Call, "call_000").status = CallStatus.TRANSCRIBING.value
    assert any_db.claim_calls("w2", clock.now(), 30) == []
    clock.advance(31)
    assert any_db.claim_calls("w2", clock.now(), 30) == ["call_000"]


def test_unqueued_finished_and_waiting_calls_are_not_claimed(any_db, clock):
    campaign = make_campaign(any_db, clock)
    now = clock.now()
    with any_db.session() as session:
        for cid, fields in {
            "call_a": {"queued": False},
            "call_b": {"queued": True, "status": CallStatus.COMPLETED.value},
            "call_c": {"queued": True, "status": CallStatus.DUPLICATE.value},
            "call_d": {"queued": True, "next_attempt_at": now.replace(year=now.year + 1)},
        }.items():
            session.add(Call(id=cid, campaign_id=campaign.id, source="SFTP", file_name="x",
                             created_at=now, updated_at=now, **fields))
    assert any_db.claim_calls("w", now, 60, limit=10) == []
