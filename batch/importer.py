"""Importing batched files through ``Intake`` and clearing their landing copies afterwards.

A file is claimed by the very transaction that creates its call: that transaction first moves
the file row on only if it is still waiting (one ``UPDATE … WHERE status IN (waiting)``, which
also takes the row's lock) and marks it ``COMPLETED`` (or ``DUPLICATE``) with the call id; a
file another sweep finished first gets no call. No intermediate ``PROCESSING`` file status is
written, so a crash mid-import leaves nothing stuck: the file is simply imported on the next
pass. The landing copy is handled only after that commit (``dispose``): removed (or kept,
``sftp.after_import = "keep"``) once imported, moved to ``<rejected>/<scope>/<file id>-<name>``
when failed, skipped or a duplicate, so the operator keeps the bytes. Blocking: worker thread.

Files are imported a group at a time: one query reads the rows of the sweeper's chunk, helper
threads validate and store ``RECORD_GROUP`` files at once (made durable together, before any of
their calls commits) while the previous group's calls are recorded in one transaction, and
duplicates are looked up for the whole group, the group's own files included. Should a group's
transaction fail, the chunk is retried file by file, so one file's trouble never holds the
others back.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, select

from batch.detect import same_file
from ingestd import errors
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Accepted, Intake, Prepared, Submission
from ingestd.models import CallSource, CallStatus, FileStatus, IngestFile

log = logging.getLogger(__name__)
WAITING = (FileStatus.DETECTED.value, FileStatus.MATCHED.value)
REJECTED = (FileStatus.FAILED.value, FileStatus.SKIPPED.value, FileStatus.DUPLICATE.value)
VANISHED_REASON = "the file disappeared from the landing folder before it was imported"
# Files whose calls one transaction records while the next group is stored (two groups are
# stored at a time: the disk merges their fsyncs; 100 beat 50 on the 20,000-file bench).
RECORD_GROUP = 100


class Importer:
    def __init__(self, db: Database, intake: Intake, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.intake = intake
        self.settings = settings
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None

    def import_files(self, file_ids: list[str]) -> None:
        """Import these waiting files; one file's system trouble (storage down, ffmpeg
        missing) is logged and leaves it waiting for the next pass, the others go on."""
        try:
            self._import_group(file_ids)
        except Exception:
            log.exception("file_group_import_failed files=%d: retrying one by one", len(file_ids))
            for file_id in file_ids:
                try:
                    self._import_group([file_id])
                except Exception:
                    log.exception("file_import_deferred file_id=%s", file_id)

    def import_file(self, file_id: str) -> None:
        """Import one waiting file of a processing batch, then clear its landing copy."""
        self._import_group([file_id])

    def _import_group(self, file_ids: Sequence[str]) -> None:
        """Import in groups of ``RECORD_GROUP``, pipelined: helper threads validate and store
        the groups (two at a time, so the disk always has work) while this thread records
        each stored group's calls in order; the landing copies are cleared last."""
        rows = self._waiting_rows(file_ids)
        groups = [rows[i:i + RECORD_GROUP] for i in range(0, len(rows), RECORD_GROUP)]
        helper = self._helper()
        preparing = [helper.submit(self._prepare, group) for group in groups]
        clearing: list[Future[None]] = []
        recorded = 0
        try:
            for future in preparing:
                rejected, prepared = future.result()
                finished = self._reject(rejected) + self._record(prepared)
                recorded += 1
                clearing.append(helper.submit(self._dispose_all, finished))
        except BaseException:
            for future in preparing[recorded:]:  # stored but never to be recorded by this call
                if not future.cancel() and future.exception() is None:
                    self.intake.discard(p for _, p in future.result()[1])
            raise
        finally:
            wait(clearing)

    def _prepare(self, rows: list[IngestFile]
                 ) -> tuple[list[tuple[IngestFile, str]], list[tuple[IngestFile, Prepared]]]:
        """Validate and store these files: (rejected with reasons, prepared). A file with
        system trouble is logged and left out of both: it waits for the next pass."""
        present: list[IngestFile] = []
        rejected: list[tuple[IngestFile, str]] = []
        for row in rows:
            if (self.settings.landing_path / row.landing_path).is_file():
                present.append(row)
            else:
                rejected.append((row, VANISHED_REASON))
        outcomes = self.intake.prepare([self._submission(row) for row in present])
        prepared: list[tuple[IngestFile, Prepared]] = []
        for row, outcome in zip(present, outcomes, strict=True):
            if isinstance(outcome, Prepared):
                prepared.append((row, outcome))
            elif isinstance(outcome, errors.UploadRejected):
                rejected.append((row, outcome.reason))
            else:
                log.error("file_import_deferred file_id=%s", row.id, exc_info=outcome)
        return rejected, prepared

    def _helper(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="import-ahead")
        return self._executor

    def _dispose_all(self, rows: list[IngestFile]) -> None:
        for row in rows:
            self._dispose_quietly(row)

    def _waiting_rows(self, file_ids: Sequence[str]) -> list[IngestFile]:
        """The rows of these files that wait in a batch, in the order asked for."""
        with self.db.session() as session:
            found = {r.id: r for r in session.exec(
                select(IngestFile).where(col(IngestFile.id).in_(list(file_ids))))}
        return [row for file_id in file_ids if (row := found.get(file_id)) is not None
                and row.batch_id is not None and row.status in WAITING]

    def _submission(self, row: IngestFile) -> Submission:
        return Submission(campaign_id=row.campaign_id, source=CallSource(row.source),
                          file_name=row.name, path=self.settings.landing_path / row.landing_path,
                          metadata=dict(row.csv_row or {}))

    def _record(self, prepared: list[tuple[IngestFile, Prepared]]) -> list[IngestFile]:
        """Claim the rows still waiting and create their calls, all in one transaction; return
        the rows this import finished."""
        if not prepared:
            return []
        try:
            with self.db.session() as session:
                claimed = claim(session, [row.id for row, _ in prepared], self.clock)
                mine = [(row, p) for row, p in prepared if row.id in claimed]
                accepted = self.intake.record(session, [p for _, p in mine])
                now = self.clock.now()
                for (row, _), outcome in zip(mine, accepted, strict=True):
                    _finish(row, outcome, now)
                if mine:  # one executemany by primary key, not a flush per row
                    session.execute(update(IngestFile), [_finished_values(row) for row, _ in mine])
        except BaseException:
            self.intake.discard(p for _, p in prepared)
            raise
        self.intake.discard(p for row, p in prepared if row.id not in claimed)
        for (row, _), outcome in zip(mine, accepted, strict=True):
            log.info("file_imported file_id=%s batch_id=%s call_id=%s status=%s", row.id,
                     row.batch_id, outcome.call_id, outcome.status.value)
        return [row for row, _ in mine]

    def _reject(self, rejected: list[tuple[IngestFile, str]]) -> list[IngestFile]:
        """Fail the rows still waiting with their reasons; return the rows failed here."""
        if not rejected:
            return []
        with self.db.session() as session:
            claimed = claim(session, [row.id for row, _ in rejected], self.clock)
            for row, reason in rejected:
                if row.id in claimed:
                    row.status, row.reason = FileStatus.FAILED.value, reason
                    row.updated_at = self.clock.now()
                    session.add(row)
        for row, reason in rejected:
            if row.id in claimed:
                log.info("file_rejected file_id=%s reason=%s", row.id, reason)
        return [row for row, _ in rejected if row.id in claimed]

    def _dispose_quietly(self, row: IngestFile) -> None:
        try:
            self.dispose(row)
        except OSError:
            log.exception("landing_cleanup_failed file_id=%s path=%s", row.id, row.landing_path)

    def dispose_by_id(self, file_id: str) -> None:
        """Clear the landing copy of a file that reached its terminal status."""
        with self.db.session() as session:
            row = session.get(IngestFile, file_id)
        if row is not None:
            self.dispose(row)

    def dispose(self, row: IngestFile) -> None:
        """Remove, keep or move aside the landing copy of a terminal file (idempotent).

        A copy whose size or mtime differ from the row's is a newer upload at the same path and
        is left alone for detection.
        """
        path = self.settings.landing_path / row.landing_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        if not same_file(row, stat.st_size, stat.st_mtime_ns):
            return
        if row.status == FileStatus.COMPLETED:
            if self.settings.sftp.after_import == "delete":
                path.unlink(missing_ok=True)
                log.info("landing_removed file_id=%s path=%s", row.id, row.landing_path)
        elif row.status in REJECTED:
            target = rejected_path(self.settings.rejected_path, row)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            log.info("landing_moved_aside file_id=%s status=%s to=%s", row.id, row.status, target)


def claim(session: Session, file_ids: Sequence[str], clock: Clock) -> set[str]:
    """Take the rows of these files that still wait, for this transaction: their ids.

    One statement that is atomic on both backends: on PostgreSQL the rows are locked in id
    order (two nodes claiming overlapping groups wait for each other instead of deadlocking)
    and a row another transaction finished meanwhile no longer matches once its lock is free;
    on SQLite the statement takes the single writer's lock, held until the commit.
    """
    # ``status || ''``: the status index would match every waiting row of a large batch, and
    # SQLite chose it over the primary key (a claim of 200 rows read all 20,000 of a batch).
    waiting_status = col(IngestFile.status).concat("").in_(WAITING)
    waiting = (select(IngestFile.id)
               .where(col(IngestFile.id).in_(list(file_ids)), waiting_status)
               .order_by(col(IngestFile.id)).with_for_update())
    statement = (update(IngestFile)
                 .where(col(IngestFile.id).in_(waiting.scalar_subquery()), waiting_status)
                 .values(updated_at=clock.now())
                 .returning(IngestFile.id)
                 .execution_options(synchronize_session=False))
    return set(session.execute(statement).scalars())


def _finished_values(row: IngestFile) -> dict[str, object]:
    return {"id": row.id, "status": row.status, "reason": row.reason, "call_id": row.call_id,
            "sha256": row.sha256, "updated_at": row.updated_at}


def _finish(row: IngestFile, accepted: Accepted, now: datetime) -> None:
    duplicate = accepted.status == CallStatus.DUPLICATE
    row.status = (FileStatus.DUPLICATE if duplicate else FileStatus.COMPLETED).value
    row.reason = accepted.duplicate_reason if duplicate else None
    row.call_id, row.sha256, row.updated_at = accepted.call_id, accepted.sha256, now


def rejected_path(root: Path, row: IngestFile) -> Path:
    """Where a failed, skipped or duplicate file's bytes are kept for the operator."""
    return root / row.scope / f"{row.id}-{row.name}"
