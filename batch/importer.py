"""Importing a batched file through ``Intake`` and clearing its landing copy afterwards.

A file is claimed by the very transaction that creates its call: ``on_recorded`` re-reads the
file row locked and marks it ``COMPLETED`` (or ``DUPLICATE``) with the call id, and gives up —
rolling the call back — if another sweep finished it first. No intermediate ``PROCESSING`` file
status is written, so a crash mid-import leaves nothing stuck: the file is simply imported on the
next pass. The landing copy is handled only after that commit (``dispose``): removed (or kept,
``sftp.after_import = "keep"``) once imported, moved to ``<rejected>/<scope>/<file id>-<name>``
when failed, skipped or a duplicate, so the operator keeps the bytes. Blocking: worker thread.
"""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path

from sqlmodel import Session

from batch.detect import same_file
from ingestd import errors
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Accepted, Intake, Submission
from ingestd.models import Batch, CallSource, CallStatus, FileStatus, IngestFile

log = logging.getLogger(__name__)
WAITING = (FileStatus.DETECTED.value, FileStatus.MATCHED.value)
REJECTED = (FileStatus.FAILED.value, FileStatus.SKIPPED.value, FileStatus.DUPLICATE.value)
VANISHED_REASON = "the file disappeared from the landing folder before it was imported"


class AlreadyHandled(Exception):
    """Another sweep finished this file first; the call being recorded is rolled back."""


class Importer:
    def __init__(self, db: Database, intake: Intake, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.intake = intake
        self.settings = settings
        self.clock = clock

    def import_files(self, file_ids: list[str]) -> None:
        """Import these waiting files; one file's system trouble (storage down, ffmpeg
        missing) is logged and leaves it waiting for the next pass, the others go on."""
        for file_id in file_ids:
            try:
                self.import_file(file_id)
            except Exception:
                log.exception("file_import_deferred file_id=%s", file_id)

    def import_file(self, file_id: str) -> None:
        """Import one waiting file of a processing batch, then clear its landing copy."""
        with self.db.session() as session:
            row = session.get(IngestFile, file_id)
            batch = session.get(Batch, row.batch_id) if row and row.batch_id else None
        if row is None or batch is None or row.status not in WAITING:
            return
        path = self.settings.landing_path / row.landing_path
        if not path.is_file():
            self._reject(file_id, VANISHED_REASON)
            return
        submission = Submission(campaign_id=batch.campaign_id, source=CallSource(row.source),
                                file_name=row.name, path=path, metadata=dict(row.csv_row or {}))
        try:
            accepted = self.intake.accept(submission, on_recorded=partial(self._recorded, file_id))
        except AlreadyHandled:
            return
        except errors.UploadRejected as exc:
            self._reject(file_id, exc.reason)
        else:
            log.info("file_imported file_id=%s batch_id=%s call_id=%s status=%s", file_id,
                     batch.id, accepted.call_id, accepted.status.value)
        self.dispose_by_id(file_id)

    def _recorded(self, file_id: str, session: Session, accepted: Accepted) -> None:
        row = session.get(IngestFile, file_id, with_for_update=True)
        if row is None or row.status not in WAITING:
            raise AlreadyHandled(file_id)
        duplicate = accepted.status == CallStatus.DUPLICATE
        row.status = (FileStatus.DUPLICATE if duplicate else FileStatus.COMPLETED).value
        row.reason = accepted.duplicate_reason if duplicate else None
        row.call_id, row.sha256 = accepted.call_id, accepted.sha256
        row.updated_at = self.clock.now()
        session.add(row)

    def _reject(self, file_id: str, reason: str) -> None:
        with self.db.session() as session:
            row = session.get(IngestFile, file_id, with_for_update=True)
            if row is None or row.status not in WAITING:
                return
            row.status, row.reason = FileStatus.FAILED.value, reason
            row.updated_at = self.clock.now()
            session.add(row)
        log.info("file_rejected file_id=%s reason=%s", file_id, reason)

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


def rejected_path(root: Path, row: IngestFile) -> Path:
    """Where a failed, skipped or duplicate file's bytes are kept for the operator."""
    return root / row.scope / f"{row.id}-{row.name}"
