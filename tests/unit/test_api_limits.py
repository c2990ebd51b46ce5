"""The per-key rate limiter: one-minute windows and upload slots, on a manual clock."""

from __future__ import annotations

from ingestd.api.limits import RateLimiter
from ingestd.clock import ManualClock


def test_window_budget_remaining_and_reset():
    clock = ManualClock()
    limiter = RateLimiter(per_minute=2, max_uploads=1, clock=clock)
    first = limiter.hit("k")
    assert (first.allowed, first.remaining, first.reset_seconds) == (True, 1, 60)
    clock.advance(15.5)
    second = limiter.hit("k")
    assert (second.allowed, second.remaining, second.reset_seconds) == (True, 0, 45)
    third = limiter.hit("k")
    assert (third.allowed, third.remaining) == (False, 0)
    assert limiter.hit("other").allowed  # buckets are independent
    clock.advance(44.5)
    assert limiter.hit("k").allowed  # a new window


def test_peek_does_not_count():
    limiter = RateLimiter(per_minute=1, max_uploads=1, clock=ManualClock())
    assert limiter.peek("k").remaining == 1 and limiter.peek("k").remaining == 1
    assert limiter.hit("k").allowed and not limiter.hit("k").allowed


def test_upload_slots():
    limiter = RateLimiter(per_minute=10, max_uploads=2, clock=ManualClock())
    assert limiter.acquire_upload("k") and limiter.acquire_upload("k")
    assert not limiter.acquire_upload("k")
    assert limiter.acquire_upload("other")
    limiter.release_upload("k")
    assert limiter.acquire_upload("k")


def test_headers():
    state = RateLimiter(per_minute=60, max_uploads=1, clock=ManualClock()).hit("k")
    assert state.headers() == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59",
                               "X-RateLimit-Reset": "60"}
