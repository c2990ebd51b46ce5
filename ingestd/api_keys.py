"""Campaign API keys: created and rotated by the operator, verified on every HTTP request.

A key is ``tv_`` + 43 URL-safe characters (256 random bits) and is shown exactly once. Only its
sha256 is stored (``ApiKey.key_hash``): a database dump reveals no usable key, and since the
keys are random a fast hash is enough (no password-style stretching needed). A campaign may hold
several active keys (one per integration, or the short-lived key of an ``ingestd upload`` job);
rotating revokes every active key of the campaign and creates one, in one transaction, so the
old keys stop working at once — also on other nodes, which look keys up in the shared database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

from ingestd import errors
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import ApiKey, Campaign

KEY_PREFIX = "tv_"
KEY_RANDOM_BYTES = 32  # 256 bits
SHOWN_PREFIX_CHARS = 10  # "tv_" and 7 characters: enough to tell keys apart in listings


@dataclass(frozen=True)
class VerifiedKey:
    """Who is calling: the key row's id and the campaign it is scoped to."""

    key_id: str
    campaign_id: str


def hash_key(key: str) -> str:
    """The stored form of ``key``: its sha256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create(db: Database, campaign_slug: str, clock: Clock) -> str:
    """Create a key for the campaign and return it (the only time it is ever available)."""
    with db.session() as session:
        campaign = _campaign(session, campaign_slug)
        return _add_key(session, campaign.id, clock)


def rotate(db: Database, campaign_slug: str, clock: Clock) -> str:
    """Revoke every active key of the campaign and return a new one, atomically."""
    with db.session() as session:
        campaign = _campaign(session, campaign_slug)
        revoke_all(session, campaign.id, clock)
        return _add_key(session, campaign.id, clock)


def create_for_campaign_id(db: Database, campaign_id: str, clock: Clock) -> tuple[str, str]:
    """A new key for the campaign with this id: ``(key, key_id)`` (for a job's own key)."""
    with db.session() as session:
        key = _add_key(session, campaign_id, clock)
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()
        return key, row.id


def revoke(db: Database, key_id: str, clock: Clock) -> None:
    """Revoke one key by its row id (a no-op when it already is)."""
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = clock.now()


def revoke_all(session: Session, campaign_id: str, clock: Clock) -> int:
    """Revoke the campaign's active keys in ``session``; return how many there were."""
    active = session.exec(select(ApiKey).where(ApiKey.campaign_id == campaign_id,
                                               ApiKey.revoked_at.is_(None))).all()
    for row in active:
        row.revoked_at = clock.now()
    return len(active)


def verify(db: Database, presented: str | None) -> VerifiedKey | None:
    """The key's identity when ``presented`` is an active key, else None. Blocking.

    The row is found by the hash's unique index; the final comparison of the two hashes is
    constant-time so no timing difference depends on how much of a guess was right.
    """
    if not presented or not presented.startswith(KEY_PREFIX) or len(presented) > 200:
        return None
    digest = hash_key(presented)
    with db.session() as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash.encode(), digest.encode()):
            return None
        return VerifiedKey(key_id=row.id, campaign_id=row.campaign_id)


def _add_key(session: Session, campaign_id: str, clock: Clock) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    session.add(ApiKey(campaign_id=campaign_id, key_hash=hash_key(key),
                       prefix=key[:SHOWN_PREFIX_CHARS], created_at=clock.now()))
    session.flush()
    return key


def _campaign(session: Session, slug: str) -> Campaign:
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    if campaign is None:
        raise errors.NotFound(f"no campaign with slug {slug!r}")
    return campaign
