"""Per-key rate limits: requests per minute (fixed one-minute windows) and concurrent uploads.

The bucket is the API key's id when the request carries a valid key, else the client address
(so unauthenticated traffic is limited too). Windows start at a bucket's first request and the
``X-RateLimit-Reset`` header is the number of seconds until the current window ends. State is
per process: with several nodes each node counts its own requests (documented limitation).
Time comes from the injected Clock, so tests move the window instead of sleeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ingestd.clock import Clock

WINDOW_SECONDS = 60.0
MAX_TRACKED_BUCKETS = 10_000  # past this, expired windows are dropped before adding one


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset_seconds)}


class RateLimiter:
    """Counts requests per bucket per window and holds the upload slots in use."""

    def __init__(self, per_minute: int, max_uploads: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.max_uploads = max_uploads
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # bucket → (window start, count)
        self._uploads: dict[str, int] = {}

    def hit(self, bucket: str) -> RateState:
        """Count one request; ``allowed`` is False when the window's budget is spent."""
        start, count = self._current(bucket)
        allowed = count < self.per_minute
        if allowed:
            count += 1
        self._windows[bucket] = (start, count)
        return self._state(start, count, allowed)

    def peek(self, bucket: str) -> RateState:
        """The bucket's state without counting a request (health and metrics endpoints)."""
        start, count = self._current(bucket)
        return self._state(start, count, True)

    def acquire_upload(self, bucket: str) -> bool:
        """Take an upload slot; False when the bucket already has ``max_uploads`` running."""
        running = self._uploads.get(bucket, 0)
        if running >= self.max_uploads:
            return False
        self._uploads[bucket] = running + 1
        return True

    def release_upload(self, bucket: str) -> None:
        running = self._uploads.get(bucket, 0) - 1
        if running <= 0:
            self._uploads.pop(bucket, None)
        else:
            self._uploads[bucket] = running

    def _current(self, bucket: str) -> tuple[float, int]:
        now = self._now()
        start, count = self._windows.get(bucket, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, count = now, 0
        if bucket not in self._windows and len(self._windows) >= MAX_TRACKED_BUCKETS:
            self._forget_expired(now)
        return start, count

    def _forget_expired(self, now: float) -> None:
        for bucket, (start, _) in list(self._windows.items()):
            if now - start >= WINDOW_SECONDS:
                del self._windows[bucket]

    def _state(self, start: float, count: int, allowed: bool) -> RateState:
        reset = max(1, math.ceil(start + WINDOW_SECONDS - self._now()))
        return RateState(limit=self.per_minute, remaining=max(0, self.per_minute - count),
                         reset_seconds=reset, allowed=allowed)

    def _now(self) -> float:
        return self.clock.now().timestamp()
