"""The worker with cloud providers: real SDKs and adapters against loopback vendors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_campaign
from fakes.loopback import Reply
from fakes.vendors import FakeAnthropic, FakeDeepgram, Said, error_body
from test_worker import add_checks, load, queue_call, worker_for

from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import CallStatus

STEREO = "20260115_JS001_outbound.mp3"
SAID = [Said(0.5, 3.0, "Thank you for calling Acme.", channel=0),
        Said(3.5, 6.0, "Hi, I'd like to invest.", channel=1)]
ANSWERS = [{"name": "greeting", "result": "PASS", "evidence": "Thank you for calling Acme",
            "reason": "Greets at 0.5 s."},
           {"name": "no_promises", "result": "FAIL", "evidence": "I guarantee it",
            "reason": "Promises returns."}]


@pytest.fixture
def vendors(settings: Settings,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDeepgram, FakeAnthropic]]:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant")
    with FakeDeepgram(SAID) as deepgram, FakeAnthropic(ANSWERS) as claude:
        settings.deepgram.base_url, settings.anthropic.base_url = deepgram.url, claude.url
        settings.anthropic.model = "claude-sonnet-4-6"
        yield deepgram, claude


def test_cloud_call_is_transcribed_analyzed_scored_and_flagged(
        any_db: Database, settings: Settings, clock: ManualClock, corpus: Path,
        vendors: tuple[FakeDeepgram, FakeAnthropic]) -> None:
    campaign = make_campaign(any_db, clock, "cloud", transcriber="deepgram",
                             analyzer="anthropic")
    add_checks(any_db, clock, campaign.id)
    call_id = queue_call(any_db, settings, clock, campaign.id, corpus / "calls" / STEREO)

    assert asyncio.run(worker_for(any_db, settings, clock).run_once()) is True

    call, versions = load(any_db, call_id)
    assert call.status == CallStatus.COMPLETED
    assert (call.score, call.flagged) == (50.0, True)
    assert call.flag_reasons == ["critical check failed: no_promises",
                                 "score 50 below threshold 70"]
    by_kind = {v.kind: v for v in versions}
    assert by_kind["transcript"].provider == "deepgram"
    assert [u["speaker"] for u in by_kind["transcript"].data["utterances"]] == ["agent",
                                                                                "customer"]
    checks = by_kind["analysis"].data["checks"]
    assert "warning: the quoted evidence does not occur" in checks[1]["reason"]


def test_rate_limit_is_retried_later_and_a_bad_request_fails_at_once(
        db: Database, settings: Settings, clock: ManualClock, corpus: Path,
        vendors: tuple[FakeDeepgram, FakeAnthropic]) -> None:
    deepgram, claude = vendors
    campaign = make_campaign(db, clock, "cloud", transcriber="deepgram", analyzer="anthropic")
    add_checks(db, clock, campaign.id)
    call_id = queue_call(db, settings, clock, campaign.id, corpus / "calls" / STEREO)
    worker = worker_for(db, settings, clock)
    deepgram.fail_next(Reply(429, {"err_code": "TOO_MANY_REQUESTS", "err_msg": "Slow down."}))
    claude.fail_next(Reply(400, error_body("invalid_request_error", "prompt is too long")))

    asyncio.run(worker.run_once())
    call, _ = load(db, call_id)
    assert (call.status, call.stage, call.attempts) == ("PENDING", "transcription", 1)
    assert call.error == "Deepgram answered HTTP 429: Slow down."

    clock.advance(3600)
    asyncio.run(worker.run_once())
    call, versions = load(db, call_id)
    assert (call.status, call.stage) == ("FAILED", "analysis")
    assert call.error == "Claude answered HTTP 400: invalid_request_error: prompt is too long"
    assert [v.kind for v in versions] == ["transcript"]
