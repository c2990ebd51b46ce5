"""Batches over time: windows that end, files waiting for import, batches that close.

The database side of ``engine.at_deadline`` and ``engine.closing``. Each batch changes in its
own transaction after re-reading it locked (and, at its deadline, under the scope's lock that
routing takes too), so sweeps running on several nodes at once agree.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import col, func, select

from batch import engine
from batch.routing import lock_scope, view_of
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import (
    OPEN_BATCH_STATUSES,
    TERMINAL_FILE_STATUSES,
    Batch,
    BatchStatus,
    Campaign,
    CsvMode,
    FileKind,
    FileStatus,
    IngestFile,
)

log = logging.getLogger(__name__)
WAITING_FILE_STATUSES = (FileStatus.DETECTED.value, FileStatus.MATCHED.value)


class Lifecycle:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def expire_deadlines(self) -> None:
        """Move every open batch whose window ended on (PROCESSING or FAILED)."""
        query = select(Batch.id).where(col(Batch.status).in_(_open()),
                                       Batch.deadline <= self.clock.now())
        with self.db.session() as session:
            due = list(session.exec(query))
        for batch_id in due:
            outcome = self._expire(batch_id)
            if outcome is None:
                continue
            event = "batch_closed" if outcome.status == BatchStatus.FAILED else "batch_processing"
            log.info("%s batch_id=%s status=%s reason=%s missing=%s", event, batch_id,
                     outcome.status.value, outcome.reason, list(outcome.missing))

    def _expire(self, batch_id: str) -> engine.Outcome | None:
        now = self.clock.now()
        with self.db.session() as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                return None
            # Routing may be binding a file to this batch right now: decide after it committed.
            lock_scope(session, batch.campaign_id, batch.scope)
            session.refresh(batch, with_for_update=True)
            if batch.status not in OPEN_BATCH_STATUSES:
                return None  # another sweep got there first
            campaign = session.get(Campaign, batch.campaign_id)
            # Two columns, not whole rows: a window closing on 2,000 files loaded 2,000 objects.
            files = session.exec(select(IngestFile.name, IngestFile.kind)
                                 .where(IngestFile.batch_id == batch.id)).all()
            csv_mode = campaign.csv_mode if campaign else CsvMode.OPTIONAL.value
            outcome = engine.at_deadline(view_of(batch, files), csv_mode)
            batch.status, batch.reason = outcome.status.value, outcome.reason
            batch.missing, batch.updated_at = list(outcome.missing), now
            if outcome.status == BatchStatus.FAILED:
                batch.closed_at = now
            session.add(batch)
        return outcome

    def importable(self) -> list[str]:
        """Ids of audio files waiting in processing batches whose bytes are stable.

        The processing batches first, then their files by batch (``ix_files_ready``): joined in
        one query, SQLite started from the files and read every waiting file of every open
        batch on each pass.
        """
        now = self.clock.now()
        with self.db.session() as session:
            processing = list(session.exec(
                select(Batch.id).where(Batch.status == BatchStatus.PROCESSING.value)))
            if not processing:
                return []
            query = (select(IngestFile.id)
                     .where(col(IngestFile.batch_id).in_(processing),
                            IngestFile.kind == FileKind.AUDIO.value,
                            col(IngestFile.status).in_(WAITING_FILE_STATUSES),
                            col(IngestFile.stable_at).is_not(None),
                            col(IngestFile.stable_at) <= now)
                     .order_by(col(IngestFile.created_at), col(IngestFile.id)))
            return list(session.exec(query))

    def next_due(self) -> datetime | None:
        """The next moment a sweep has work without any new event: a window that ends or a
        recorded file that becomes stable (both strictly in the future)."""
        now = self.clock.now()
        deadline = (select(func.min(Batch.deadline))
                    .where(col(Batch.status).in_(_open()), Batch.deadline > now))
        stable = (select(func.min(IngestFile.stable_at))
                  .where(IngestFile.status == FileStatus.DETECTED.value,
                         col(IngestFile.batch_id).is_(None), col(IngestFile.stable_at) > now))
        with self.db.session() as session:
            found = [session.exec(deadline).one(), session.exec(stable).one()]
        moments = [m if m.tzinfo else m.replace(tzinfo=UTC) for m in found if m is not None]
        return min(moments, default=None)

    def close_finished(self) -> None:
        """Close every processing batch none of whose files still waits for import.

        A batch with a file still waiting is passed over by one query for all of them, so a
        pass during a large import does not read the batch's manifest and every file row.
        """
        processing = select(Batch.id).where(Batch.status == BatchStatus.PROCESSING.value)
        unfinished = (select(IngestFile.batch_id).distinct()
                      .join(Batch, col(Batch.id) == col(IngestFile.batch_id))
                      .where(Batch.status == BatchStatus.PROCESSING.value,
                             col(IngestFile.status).not_in(_terminal())))
        with self.db.session() as session:
            candidates = set(session.exec(processing)) - set(session.exec(unfinished))
        for batch_id in sorted(candidates):
            outcome = self._close(batch_id)
            if outcome is not None:
                log.info("batch_closed batch_id=%s status=%s reason=%s", batch_id,
                         outcome.status.value, outcome.reason)

    def _close(self, batch_id: str) -> engine.Outcome | None:
        with self.db.session() as session:
            batch = session.get(Batch, batch_id, with_for_update=True)
            if batch is None or batch.status != BatchStatus.PROCESSING:
                return None
            rows = session.exec(select(IngestFile.id, IngestFile.name, IngestFile.kind,
                                       IngestFile.status).where(IngestFile.batch_id == batch.id))
            files = [engine.FileView(f.id, f.name, FileKind(f.kind), FileStatus(f.status))
                     for f in rows]
            if not engine.is_finished(files):
                return None
            outcome = engine.closing(files, batch.missing)
            now = self.clock.now()
            # Only if still processing: on SQLite the lock above is a no-op, and the route
            # pass and the import pass both close batches (each logged batch_closed).
            closed = session.execute(
                update(Batch).where(col(Batch.id) == batch_id,
                                    col(Batch.status) == BatchStatus.PROCESSING.value)
                .values(status=outcome.status.value, reason=outcome.reason, updated_at=now,
                        closed_at=now)
                .execution_options(synchronize_session=False))
        return outcome if closed.rowcount else None


def _terminal() -> list[str]:
    return [status.value for status in TERMINAL_FILE_STATUSES]


def _open() -> list[str]:
    return [status.value for status in OPEN_BATCH_STATUSES]
