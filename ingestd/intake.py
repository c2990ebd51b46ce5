"""Protocol-independent acceptance of one recording: validate, store, create the call.

Used alike by the batch import (SFTP, drop folders), the HTTP API and bulk upload. Order matters
for "nothing accepted is lost": the bytes are durably stored before the call row is committed,
and the caller removes its own copy only after :meth:`Intake.accept` returned. A crash between
the store and the commit leaves an unreferenced stored object, never a call without bytes.
Blocking (ffmpeg, hashing, database): call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from ingestd import audio, config, errors, metadata
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import Agent, Call, CallSource, CallStatus, Campaign, new_id
from ingestd.storage import Storage


@dataclass(frozen=True)
class Submission:
    """One recording offered for import."""

    campaign_id: str
    source: CallSource
    file_name: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    call_id: str
    status: CallStatus  # PENDING, or DUPLICATE with ``duplicate_of``
    sha256: str
    size: int
    duplicate_of: str | None = None
    duplicate_reason: str | None = None


class Intake:
    def __init__(self, db: Database, storage: Storage, limits: config.LimitsSettings,
                 clock: Clock) -> None:
        self.db = db
        self.storage = storage
        self.limits = limits
        self.clock = clock

    def accept(self, sub: Submission, *, record_duplicate: bool = True,
               on_recorded: Callable[[Session, Accepted], None] | None = None) -> Accepted:
        """Validate and import ``sub``; raise UploadRejected with a reason on bad input.

        A duplicate (SPEC §3) is recorded as a ``DUPLICATE`` call that never reaches the
        pipeline, or, with ``record_duplicate=False``, raised as DuplicateUpload.
        ``on_recorded`` runs in the transaction that creates the call, so the caller's own
        bookkeeping (e.g. the file row) commits with it or not at all: an import is never
        half-recorded, also across a crash.
        """
        info = audio.validate(sub.path, self.limits)
        call_id = new_id("call")
        stored = self.storage.put_file(f"{sub.campaign_id}/{call_id}/{sub.file_name}", sub.path)
        try:
            with self.db.session() as session:
                accepted = self._record(session, sub, call_id, stored, info, record_duplicate)
                if on_recorded is not None:
                    on_recorded(session, accepted)
                return accepted
        except BaseException:
            self.storage.delete(stored.key)
            raise

    def _record(self, session: Session, sub: Submission, call_id: str, stored: Any,
                info: audio.AudioInfo, record_duplicate: bool) -> Accepted:
        campaign = session.get(Campaign, sub.campaign_id)
        if campaign is None:
            raise errors.NotFound(f"campaign {sub.campaign_id} does not exist")
        agent_code = link_agent(session, sub.file_name, sub.metadata)
        duplicate = find_duplicate(session, sub, stored.sha256, agent_code)
        if duplicate and not record_duplicate:
            raise errors.DuplicateUpload(duplicate[1], existing_call_id=duplicate[0])
        now = self.clock.now()
        call = Call(
            id=call_id, campaign_id=campaign.id, source=sub.source.value,
            status=(CallStatus.DUPLICATE if duplicate else CallStatus.PENDING).value,
            file_name=sub.file_name, storage_key=stored.key, size=stored.size,
            sha256=stored.sha256, duration=info.duration, channels=info.channels,
            sample_rate=info.sample_rate, meta=dict(sub.metadata),
            client_reference=sub.metadata.get("client_reference"),
            call_date=sub.metadata.get("call_date"), agent_code=agent_code,
            duplicate_of=duplicate[0] if duplicate else None,
            error=duplicate[1] if duplicate else None,
            queued=campaign.auto_process and not duplicate, created_at=now, updated_at=now,
        )
        session.add(call)
        if duplicate:
            self.storage.delete(stored.key)
            call.storage_key = None
        return Accepted(call_id=call.id, status=CallStatus(call.status), sha256=stored.sha256,
                        size=stored.size, duplicate_of=call.duplicate_of,
                        duplicate_reason=call.error)


def link_agent(session: Session, file_name: str, meta: dict[str, Any]) -> str | None:
    """The known agent code for this call: the metadata's ``agent_code``, else a name token."""
    code = meta.get("agent_code")
    candidates = ([code] if code else []) + metadata.name_tokens(file_name)
    if not candidates:
        return None
    # Only the candidates are looked up: this runs for every imported file.
    known = set(session.exec(select(Agent.code).where(col(Agent.code).in_(candidates))).all())
    return next((c for c in candidates if c in known), None)


def find_duplicate(session: Session, sub: Submission, sha256: str,
                   agent_code: str | None) -> tuple[str, str] | None:
    """``(existing_call_id, reason)`` when ``sub`` duplicates a call of its campaign (SPEC §3)."""
    base = select(Call.id).where(Call.campaign_id == sub.campaign_id,
                                 Call.status != CallStatus.DUPLICATE.value)
    reference = sub.metadata.get("client_reference")
    candidates: list[tuple[Any, str]] = []
    if reference:
        candidates.append((base.where(Call.client_reference == reference),
                           f"client_reference {reference} already imported"))
    call_date = sub.metadata.get("call_date")
    if agent_code and call_date:
        candidates.append((base.where(Call.file_name == sub.file_name,
                                      Call.agent_code == agent_code, Call.call_date == call_date),
                           "same file name, agent and call date already imported"))
    if sub.source == CallSource.SFTP:
        candidates.append((base.where(Call.file_name == sub.file_name,
                                      Call.source == CallSource.SFTP.value),
                           "same file name already imported through SFTP"))
    candidates.append((base.where(Call.sha256 == sha256), "same content already imported"))
    for query, reason in candidates:
        existing = session.exec(query.limit(1)).first()
        if existing:
            return existing, f"duplicate: {reason} (call {existing})"
    return None
