"""What every route needs, built once per server: settings, database, intake, clock, limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fastapi import Request

from ingestd.api.envelope import ApiError
from ingestd.api.limits import RateLimiter
from ingestd.api_keys import VerifiedKey
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake

API_KEY_HEADER = "X-API-Key"
SOURCE_HEADER = "X-Ingestd-Source"


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    intake: Intake
    clock: Clock
    limiter: RateLimiter
    # Upload outcomes since start, by result (accepted, duplicate, rejected, failed).
    uploads: Counter[str] = field(default_factory=Counter)

    @classmethod
    def build(cls, settings: Settings, db: Database, intake: Intake, clock: Clock) -> ApiContext:
        limiter = RateLimiter(settings.http.rate_limit_per_minute,
                              settings.http.max_concurrent_uploads, clock)
        return cls(settings=settings, db=db, intake=intake, clock=clock, limiter=limiter)


def api_context(request: Request) -> ApiContext:
    return request.app.state.api


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "req_unknown")


def require_key(request: Request) -> VerifiedKey:
    """The caller's key, verified by the middleware; 401 without a valid one."""
    key = getattr(request.state, "api_key", None)
    if key is None:
        raise ApiError(401, f"missing, unknown or revoked API key (send it in the "
                            f"{API_KEY_HEADER} header)")
    return key


def rate_bucket(request: Request) -> str:
    return getattr(request.state, "rate_bucket", "anonymous")
