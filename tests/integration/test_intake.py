"""Intake: what is accepted, what is refused and why, and that nothing is half-recorded."""

from __future__ import annotations

import hashlib

import pytest
from conftest import make_campaign
from sqlmodel import select

from ingestd import errors
from ingestd.intake import Intake, Submission
from ingestd.models import Agent, Call, CallSource, CallStatus
from ingestd.storage.local import LocalStorage

BAD_REASONS = {
    "bad_zero_bytes.mp3": "empty file (0 bytes)",
    "bad_text_named.mp3": "not a decodable audio file",
    "bad_truncated_3kb.mp3": "too short: 0.3 s < 10 s",
    "bad_too_short_4s.wav": "too short: 4.0 s < 10 s",
    "bad_corrupt_header.wav": "not a decodable audio file (Invalid sample rate: 0)",
}


@pytest.fixture
def intake(db, settings, clock):
    return Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)


def _sub(campaign, path, source=CallSource.SFTP, **meta):
    return Submission(campaign_id=campaign.id, source=source, file_name=path.name, path=path,
                      metadata=meta)


@pytest.mark.parametrize("name, reason", sorted(BAD_REASONS.items()))
def test_bad_audio_is_refused_with_a_reason(intake, db, clock, corpus, name, reason):
    campaign = make_campaign(db, clock)
    with pytest.raises(errors.UploadRejected) as info:
        intake.accept(_sub(campaign, corpus / "bad" / name))
    assert reason in info.value.reason
    with db.session() as session:
        assert session.exec(select(Call)).all() == []


def test_silent_call_is_valid_audio(intake, db, clock, corpus):
    campaign = make_campaign(db, clock)
    accepted = intake.accept(_sub(campaign, corpus / "bad" / "bad_silent_30s.wav"))
    assert accepted.status == CallStatus.PENDING


def test_accepted_call_is_stored_and_pending(intake, db, clock, corpus, settings):
    campaign = make_campaign(db, clock)
    path = corpus / "calls" / "call_JS001_20260116.m4a"
    with db.session() as session:
        session.add(Agent(code="JS001", name="James Smith", created_at=clock.now()))
    accepted = intake.accept(_sub(campaign, path, call_type="INBOUND"))
    with db.session() as session:
        call = session.get(Call, accepted.call_id)
    assert call.status == CallStatus.PENDING.value and call.queued
    assert call.agent_code == "JS001"  # linked by the file-name token
    assert call.meta == {"call_type": "INBOUND"}
    assert abs(call.duration - 56.8) < 0.2 and call.channels == 2
    stored = settings.storage_path / call.storage_key
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == call.sha256 == accepted.sha256
    # one folder per campaign and day, not one per call
    assert call.storage_key == (f"{campaign.id}/{clock.now():%Y-%m-%d}/"
                                f"{call.id}-call_JS001_20260116.m4a")


@pytest.mark.parametrize("first_meta, second_meta, source, why", [
    ({}, {}, CallSource.API, "same content"),
    ({"client_reference": "R1"}, {"client_reference": "R1"}, CallSource.API, "client_reference"),
])
def test_duplicates_are_recorded_not_processed(intake, db, clock, corpus, first_meta,
                                               second_meta, source, why):
    campaign = make_campaign(db, clock)
    first = intake.accept(_sub(campaign, corpus / "calls" / "20260120_KL003_outbound.mp3",
                               source, **first_meta))
    other = corpus / "calls" / ("20260120_KL003_outbound.mp3" if why == "same content"
                                else "JD002 callback 1415.webm")
    second = intake.accept(_sub(campaign, other, source, **second_meta))
    assert second.status == CallStatus.DUPLICATE and second.duplicate_of == first.call_id
    assert why in second.duplicate_reason
    with db.session() as session:
        dup = session.get(Call, second.call_id)
    assert not dup.queued and dup.storage_key is None
    with pytest.raises(errors.DuplicateUpload) as info:
        intake.accept(_sub(campaign, other, source, **second_meta), record_duplicate=False)
    assert info.value.existing_call_id == first.call_id


def test_failure_in_the_same_transaction_leaves_nothing(intake, db, clock, corpus, settings):
    campaign = make_campaign(db, clock)

    def explode(session, accepted):
        raise RuntimeError("crash while recording")

    with pytest.raises(RuntimeError):
        intake.accept(_sub(campaign, corpus / "calls" / "20260120_KL003_outbound.mp3"),
                      on_recorded=explode)
    with db.session() as session:
        assert session.exec(select(Call)).all() == []
    assert [p for p in settings.storage_path.rglob("*") if p.is_file()] == []
