"""Operator actions on one batch (``ingestd batch cancel|retry``) and the open-batch board.

Both actions run in the CLI's process beside a running daemon; they change rows only, under the
same scope lock and row locks the sweeper takes, and leave the landing tree to the sweeper (or
move bytes where no sweeper looks). Decisions:

- **cancel** works on an open or ``PROCESSING`` batch, and on a ``FAILED`` one that still holds
  waiting files (a ``csv_mode = required`` batch whose CSV never came). Files already imported
  stay ``COMPLETED``; every file not yet imported becomes ``SKIPPED`` ("not imported: its batch
  was cancelled by an operator") and its landing copy is moved aside to the rejected folder by the
  next sweep. The batch ends ``CANCELLED`` with the reason "cancelled by an operator" and lists
  the CSV rows that never came as missing; files named by it that arrive later are not awaited
  any more (they go to the scope's CSV-less batch). An import racing the cancel is decided by the
  file row's lock: whichever commits first wins, the other sees a terminal file and backs off.
- **retry** works on a ``FAILED`` or ``INCOMPLETE`` batch and re-runs its audio files that
  ``FAILED`` at import and whose bytes are still kept in the rejected folder (after a limit was
  raised, a codec installed, …). They go into a new batch of the same scope, ``PROCESSING`` at
  once, as new file rows carrying their CSV row; the old rows keep their ``FAILED`` status and
  name the batch that retried them. Duplicates, skipped files and missing rows are outcomes, not
  faults, and are not retried; a batch that failed for want of a CSV is bound by pushing the CSV.
  The kept bytes move to ``<landing>/<scope>/.retry/`` (a dot-folder: never scanned as a new
  upload) and from there are imported and disposed of like any other file.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, col, select

from batch import engine
from batch.importer import rejected_path
from batch.routing import lock_scope, view_of
from ingestd import errors
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import (
    OPEN_BATCH_STATUSES,
    Batch,
    BatchStatus,
    Campaign,
    FileKind,
    FileStatus,
    IngestFile,
    new_id,
)

log = logging.getLogger(__name__)
CANCEL_REASON = "cancelled by an operator"
CANCELLED_FILE_REASON = "not imported: its batch was cancelled by an operator"
RETRY_FOLDER = ".retry"
WAITING = (FileStatus.DETECTED.value, FileStatus.MATCHED.value)
RETRYABLE_BATCHES = (BatchStatus.FAILED.value, BatchStatus.INCOMPLETE.value)


@dataclass(frozen=True)
class RetryResult:
    batch_id: str  # the new batch
    retried: list[str]  # file names
    not_retried: dict[str, str] = field(default_factory=dict)  # file name -> why


def cancel(db: Database, clock: Clock, batch_id: str) -> list[str]:
    """Cancel what is left of a batch; return the ids of the files it skipped."""
    with db.session() as session:
        batch = _locked_batch(session, batch_id)
        files = list(session.exec(select(IngestFile).where(IngestFile.batch_id == batch.id)
                                  .with_for_update()))
        waiting = [f for f in files if f.status in WAITING]
        if not _cancellable(batch, waiting):
            raise errors.Conflict(
                f"batch {batch.id} is {batch.status}: only an open or processing batch, or a "
                "failed one with files still waiting, can be cancelled")
        now = clock.now()
        for row in waiting:
            row.status, row.reason, row.updated_at = (FileStatus.SKIPPED.value,
                                                      CANCELLED_FILE_REASON, now)
            session.add(row)
        view = view_of(batch, files)
        batch.missing = [name for name in view.named if name not in view.present]
        batch.status, batch.reason = BatchStatus.CANCELLED.value, CANCEL_REASON
        batch.updated_at = batch.closed_at = now
        session.add(batch)
    log.info("batch_cancelled batch_id=%s skipped_files=%d", batch_id, len(waiting))
    return [row.id for row in waiting]


def _cancellable(batch: Batch, waiting: list[IngestFile]) -> bool:
    status = BatchStatus(batch.status)
    if status in OPEN_BATCH_STATUSES or status == BatchStatus.PROCESSING:
        return True
    return status == BatchStatus.FAILED and bool(waiting)


def retry(db: Database, clock: Clock, landing_root: Path, rejected_root: Path,
          batch_id: str) -> RetryResult:
    """Re-run a closed batch's failed files in a new batch (see the module docstring)."""
    with db.session() as session:
        old = _locked_batch(session, batch_id)
        if old.status not in RETRYABLE_BATCHES:
            raise errors.Conflict(f"batch {old.id} is {old.status}: only a FAILED or INCOMPLETE "
                                  "batch can be retried")
        failed = list(session.exec(
            select(IngestFile).where(IngestFile.batch_id == old.id,
                                     IngestFile.kind == FileKind.AUDIO.value,
                                     IngestFile.status == FileStatus.FAILED.value)
            .order_by(col(IngestFile.created_at)).with_for_update()))
        kept = {f.id: rejected_path(rejected_root, f) for f in failed}
        usable = [f for f in failed if kept[f.id].is_file()]
        skipped = {f.name: f"its kept copy {kept[f.id]} is gone" for f in failed
                   if f not in usable}
        if not usable:
            raise errors.Conflict(_nothing_to_retry(old, skipped))
        new = _open_retry_batch(session, old, usable, clock.now())
        moves = _retry_rows(session, new, usable, kept, landing_root, clock.now())
        session.flush()
        try:
            _move_all(moves)
            session.commit()
        except BaseException:
            _move_all([(target, source) for source, target in moves if target.exists()])
            raise
    log.info("batch_retried batch_id=%s new_batch_id=%s files=%d", old.id, new.id, len(usable))
    return RetryResult(new.id, [f.name for f in usable], skipped)


def _nothing_to_retry(batch: Batch, skipped: dict[str, str]) -> str:
    if skipped:
        names = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        return f"nothing to retry in batch {batch.id}: {names}"
    if batch.reason == engine.CSV_REQUIRED_REASON:
        return (f"nothing to retry in batch {batch.id}: it waits for a CSV; push a CSV naming "
                "its files into its folder")
    return f"nothing to retry in batch {batch.id}: none of its audio files failed at import"


def _open_retry_batch(session: Session, old: Batch, files: list[IngestFile],
                      now: datetime) -> Batch:
    names = {f.name for f in files}
    rows = [r for r in old.manifest_rows if r["file_name"] in names]
    batch = Batch(campaign_id=old.campaign_id, scope=old.scope,
                  status=BatchStatus.PROCESSING.value, csv_file=old.csv_file,
                  csv_file_id=old.csv_file_id, manifest_rows=rows, deadline=now,
                  created_at=now, updated_at=now)
    session.add(batch)
    old.reason = f"{old.reason or old.status}; failed files retried in batch {batch.id}"
    old.updated_at = now
    session.add(old)
    return batch


def _retry_rows(session: Session, batch: Batch, files: list[IngestFile], kept: dict[str, Path],
                landing_root: Path, now: datetime) -> list[tuple[Path, Path]]:
    """New waiting rows for the retried files; return the (kept copy, landing target) moves."""
    moves: list[tuple[Path, Path]] = []
    for old in files:
        file_id = new_id("fil")
        rel = f"{old.scope}/{RETRY_FOLDER}/{file_id}-{old.name}"
        stat = kept[old.id].stat()
        session.add(IngestFile(
            id=file_id, campaign_id=old.campaign_id, scope=old.scope, name=old.name,
            landing_path=rel, kind=old.kind, source=old.source, size=stat.st_size,
            mtime_ns=stat.st_mtime_ns, status=_waiting_status(old),
            warnings=list(old.warnings), stable_at=now, batch_id=batch.id,
            csv_row=dict(old.csv_row) if old.csv_row is not None else None,
            created_at=now, updated_at=now))
        old.reason = f"{old.reason} (retried in batch {batch.id})"
        old.updated_at = now
        session.add(old)
        moves.append((kept[old.id], landing_root / rel))
    return moves


def _waiting_status(row: IngestFile) -> str:
    return (FileStatus.MATCHED if row.csv_row is not None else FileStatus.DETECTED).value


def _move_all(moves: list[tuple[Path, Path]]) -> None:
    for source, target in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)


def _locked_batch(session: Session, batch_id: str) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise errors.NotFound(f"no batch {batch_id!r}")
    lock_scope(session, batch.campaign_id, batch.scope)
    session.refresh(batch, with_for_update=True)
    return batch


@dataclass(frozen=True)
class BoardRow:
    """One line of ``ingestd batch watch``."""

    id: str
    campaign: str
    scope: str
    status: str
    csv_file: str | None
    files: int
    waiting: int
    imported: int
    rejected: int
    missing: int
    seconds_left: float


def board(session: Session, now: datetime) -> list[BoardRow]:
    """The batches still open or processing, oldest first, with their file counts."""
    live = [s.value for s in (*OPEN_BATCH_STATUSES, BatchStatus.PROCESSING)]
    batches = list(session.exec(select(Batch).where(col(Batch.status).in_(live))
                                .order_by(col(Batch.created_at), col(Batch.id))))
    slugs = {c.id: c.slug for c in session.exec(select(Campaign))}
    rows: list[BoardRow] = []
    for b in batches:
        files = list(session.exec(select(IngestFile).where(IngestFile.batch_id == b.id,
                                                           IngestFile.kind != FileKind.CSV.value)))
        view = view_of(b, files)
        rows.append(BoardRow(
            id=b.id, campaign=slugs.get(b.campaign_id, "?"), scope=b.scope, status=b.status,
            csv_file=b.csv_file, files=len(files),
            waiting=sum(1 for f in files if f.status in WAITING),
            imported=sum(1 for f in files if f.status == FileStatus.COMPLETED.value),
            rejected=sum(1 for f in files if f.status in _REJECTED),
            missing=len(b.missing) or sum(1 for n in view.named if n not in view.present),
            seconds_left=max(0.0, (_aware(b.deadline) - now).total_seconds())))
    return rows


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_REJECTED = (FileStatus.FAILED.value, FileStatus.DUPLICATE.value, FileStatus.SKIPPED.value)
