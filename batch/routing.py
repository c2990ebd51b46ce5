"""Putting ready files into batches: the database side of the engine's routing decisions.

A file is ready when its row is ``DETECTED``, belongs to no batch and its ``stable_at`` has
passed. Ready files are routed per scope, up to ``ROUTE_CHUNK`` in one transaction that re-reads
each row locked, so two sweeps never route the same file twice. CSVs are routed before audio
within a pass: audio that became ready together with its manifest then joins the manifest's
batch directly, which is what a CSV takeover would have produced anyway.

Several sweepers (nodes sharing one PostgreSQL, or a CLI command beside the daemon) must not both
open a batch for the same scope: every transaction that decides about a scope's batches first
takes :func:`lock_scope`, a transaction-scoped advisory lock keyed by campaign and scope, and only
then reads the scope's open batches. On SQLite the single writer already serialises them.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, col, select

from batch import engine
from batch.manifest import Manifest, parse_manifest
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
)

log = logging.getLogger(__name__)
ROUTE_CHUNK = 500


@dataclass
class Scope:
    """A scope's open batches and their files, loaded inside one routing transaction."""

    campaign: Campaign
    name: str  # "<slug>" or "<slug>/<sub>/…"
    batches: list[Batch]
    files: dict[str, list[IngestFile]]  # batch id -> its files

    def views(self) -> list[engine.BatchView]:
        return [view_of(b, self.files.get(b.id, [])) for b in self.batches]

    def batch(self, batch_id: str) -> Batch:
        return next(b for b in self.batches if b.id == batch_id)


def view_of(batch: Batch, files: list[IngestFile]) -> engine.BatchView:
    """The engine's view of a batch row."""
    return engine.BatchView(
        id=batch.id, status=BatchStatus(batch.status), has_csv=batch.csv_file_id is not None,
        named=tuple(r["file_name"] for r in batch.manifest_rows),
        present=frozenset(f.name for f in files if f.kind != FileKind.CSV))


class Router:
    def __init__(self, db: Database, clock: Clock, landing_root: Path) -> None:
        self.db = db
        self.clock = clock
        self.landing_root = landing_root

    def route_ready(self) -> list[str]:
        """Route every ready file; return ids of files that became terminal (for clean-up).

        One transaction per scope and ``ROUTE_CHUNK`` files, the scope loaded once: loading
        it per file decoded the manifest and every file row of the scope's open batches again
        for each file, quadratic in the batch size (20,000 files: hours). The scope lock is
        taken before any file row lock, and a transaction holds one scope only: two sweepers
        cannot wait on each other.
        """
        finished: list[str] = []
        by_scope: dict[tuple[str, str], list[tuple[str, FileKind, str]]] = {}
        for file_id, kind, rel_path, campaign_id, scope in self._ready():
            by_scope.setdefault((campaign_id, scope), []).append((file_id, kind, rel_path))
        for (campaign_id, scope_name), ready in by_scope.items():
            for start in range(0, len(ready), ROUTE_CHUNK):
                chunk = ready[start:start + ROUTE_CHUNK]
                finished += self._route_chunk(campaign_id, scope_name, chunk)
        return finished

    def _route_chunk(self, campaign_id: str, scope_name: str,
                     chunk: list[tuple[str, FileKind, str]]) -> list[str]:
        parsed = {fid: self._parse(rel) for fid, kind, rel in chunk if kind == FileKind.CSV}
        finished: list[str] = []
        with self.db.session() as session:
            lock_scope(session, campaign_id, scope_name)
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None  # file rows reference their campaign
            scope = load_scope(session, campaign, scope_name)
            for file_id, _, _ in chunk:
                row = session.get(IngestFile, file_id, with_for_update=True)
                if row is None or row.batch_id is not None or row.status != FileStatus.DETECTED:
                    continue  # routed meanwhile by another sweep
                self._route(session, scope, row, parsed.get(file_id))
                if row.status not in (FileStatus.DETECTED, FileStatus.MATCHED):
                    finished.append(row.id)
        return finished

    def _ready(self) -> list[tuple[str, FileKind, str, str, str]]:
        now = self.clock.now()
        query = select(IngestFile).where(
            IngestFile.status == FileStatus.DETECTED.value, col(IngestFile.batch_id).is_(None),
            col(IngestFile.stable_at).is_not(None), col(IngestFile.stable_at) <= now)
        with self.db.session() as session:
            rows = list(session.exec(query))
        rows.sort(key=lambda r: (r.kind != FileKind.CSV, r.stable_at, r.created_at, r.id))
        return [(r.id, FileKind(r.kind), r.landing_path, r.campaign_id, r.scope) for r in rows]

    def _parse(self, rel_path: str) -> Manifest | errors.ManifestError:
        try:
            data = (self.landing_root / rel_path).read_bytes()
        except OSError as exc:
            return errors.ManifestError(f"cannot read the CSV ({exc.strerror or exc})")
        try:
            return parse_manifest(data)
        except errors.ManifestError as exc:
            return exc

    def _route(self, session: Session, scope: Scope, row: IngestFile,
               parsed: Manifest | errors.ManifestError | None) -> None:
        if row.kind == FileKind.CSV:
            assert parsed is not None
            self._route_csv(session, scope, row, parsed)
        elif row.kind == FileKind.AUDIO:
            self._route_audio(session, scope, row)
        else:
            self._set_file(row, FileStatus.SKIPPED, reason=engine.skip_reason(row.name))
            self._join_csv_less(session, scope, row)

    def _route_audio(self, session: Session, scope: Scope, row: IngestFile) -> None:
        target = engine.csv_batch_for(row.name, scope.views())
        if target is not None:
            batch = scope.batch(target)
            self._bind(row, batch)
            scope.files[batch.id].append(row)
            self._refresh_csv_status(session, scope, batch)
        elif (late := late_batch(session, row)) is not None:
            self._open_late(session, scope, row, late)
        else:
            self._join_csv_less(session, scope, row)

    def _route_csv(self, session: Session, scope: Scope, row: IngestFile,
                   parsed: Manifest | errors.ManifestError) -> None:
        problem = parsed.message if isinstance(parsed, errors.ManifestError) else (
            engine.NO_ROWS_REASON if not parsed.rows else None)
        if problem is not None or isinstance(parsed, errors.ManifestError):
            batch = self._open(session, scope, BatchStatus.FAILED, csv=row)
            batch.reason = f"unusable CSV {row.name}: {problem}"
            batch.closed_at = self.clock.now()
            self._set_file(row, FileStatus.FAILED, reason=problem, batch=batch)
            log.info("batch_closed batch_id=%s status=FAILED reason=%s", batch.id, batch.reason)
            return
        rows = [r.as_json() for r in parsed.rows]
        batch = self._take_over(session, scope, row, rows)
        self._set_file(row, FileStatus.COMPLETED, batch=batch)
        row.warnings = list(parsed.warnings)
        for orphan in eligible_orphans(session, scope, batch):
            self._bind(orphan, batch)
            scope.files.setdefault(batch.id, []).append(orphan)
        self._refresh_csv_status(session, scope, batch)

    def _take_over(self, session: Session, scope: Scope, csv_row: IngestFile,
                   rows: list[dict]) -> Batch:
        """The CSV takes the open CSV-less batch over, or opens its own batch."""
        old_id = engine.csv_less_batch(scope.views())
        if old_id is None:
            return self._open(session, scope, BatchStatus.WAITING_FOR_FILES, csv=csv_row,
                              rows=rows)
        batch = scope.batch(old_id)
        batch.csv_file, batch.csv_file_id, batch.manifest_rows = csv_row.name, csv_row.id, rows
        files = scope.files.get(batch.id, [])
        views = [engine.FileView(f.id, f.name, FileKind(f.kind), FileStatus(f.status))
                 for f in files]
        bound, moved = engine.takeover_split([r["file_name"] for r in rows], views)
        fresh = self._open(session, scope, engine.csv_less_status(scope.campaign.csv_mode),
                           deadline=batch.deadline) if moved else None
        for f in files:
            if f.id in bound:
                self._bind(f, batch)
            elif fresh is not None:
                f.batch_id = fresh.id
                scope.files[fresh.id].append(f)
        scope.files[batch.id] = [f for f in files if f.id in bound]
        log.info("batch_taken_over batch_id=%s csv_file_id=%s moved_to=%s", batch.id,
                 csv_row.id, fresh.id if fresh else None)
        return batch

    def _open_late(self, session: Session, scope: Scope, row: IngestFile, old: Batch) -> None:
        """A named file arriving after its batch stopped waiting: a batch of its own."""
        manifest_row = next(r for r in old.manifest_rows if r["file_name"] == row.name)
        old.missing = [name for name in old.missing if name != row.name]
        old.updated_at = self.clock.now()
        session.add(old)
        batch = self._open(session, scope, BatchStatus.PROCESSING, rows=[manifest_row])
        batch.csv_file, batch.csv_file_id = old.csv_file, old.csv_file_id
        self._bind(row, batch)
        log.info("batch_processing batch_id=%s late_file_id=%s earlier_batch_id=%s",
                 batch.id, row.id, old.id)

    def _join_csv_less(self, session: Session, scope: Scope, row: IngestFile) -> None:
        batch_id = engine.csv_less_batch(scope.views())
        if batch_id is None:
            batch = self._open(session, scope, engine.csv_less_status(scope.campaign.csv_mode))
        else:
            batch = scope.batch(batch_id)
        row.batch_id = batch.id
        row.updated_at = self.clock.now()
        scope.files.setdefault(batch.id, []).append(row)
        session.add(row)

    def _bind(self, row: IngestFile, batch: Batch) -> None:
        """Match an audio file to its row of the batch's manifest."""
        entry = next(r for r in batch.manifest_rows if r["file_name"] == row.name)
        row.batch_id = batch.id
        row.status = FileStatus.MATCHED.value
        row.csv_row = dict(entry["metadata"])
        row.warnings = [*row.warnings, *[w for w in entry["warnings"] if w not in row.warnings]]
        row.updated_at = self.clock.now()

    def _refresh_csv_status(self, session: Session, scope: Scope, batch: Batch) -> None:
        if batch.status not in OPEN_BATCH_STATUSES:
            return
        view = view_of(batch, [*scope.files.get(batch.id, [])])
        status = engine.csv_batch_status(view.named, view.present)
        if status != batch.status:
            batch.status, batch.updated_at = status.value, self.clock.now()
            log.info("batch_status_changed batch_id=%s status=%s", batch.id, status.value)
            if status == BatchStatus.PROCESSING:
                log.info("batch_processing batch_id=%s files=%d", batch.id, len(view.present))
        session.add(batch)

    def _open(self, session: Session, scope: Scope, status: BatchStatus, *,
              csv: IngestFile | None = None, rows: list[dict] | None = None,
              deadline: datetime | None = None) -> Batch:
        now = self.clock.now()
        batch = Batch(
            campaign_id=scope.campaign.id, scope=scope.name, status=status.value,
            csv_file=csv.name if csv else None, csv_file_id=csv.id if csv else None,
            manifest_rows=rows or [], created_at=now, updated_at=now,
            deadline=deadline or now + timedelta(seconds=scope.campaign.batch_window))
        session.add(batch)
        scope.batches.append(batch)
        scope.files.setdefault(batch.id, [])
        log.info("batch_opened batch_id=%s campaign_id=%s scope=%s status=%s csv_file=%s",
                 batch.id, batch.campaign_id, batch.scope, batch.status, batch.csv_file)
        return batch

    def _set_file(self, row: IngestFile, status: FileStatus, *, reason: str | None = None,
                  batch: Batch | None = None) -> None:
        row.status, row.reason, row.updated_at = status.value, reason, self.clock.now()
        if batch is not None:
            row.batch_id = batch.id


def lock_scope(session: Session, campaign_id: str, scope: str) -> None:
    """Hold the scope's advisory lock until the transaction ends (PostgreSQL; no-op on SQLite).

    The key is a 64-bit hash of campaign and scope; a collision only serialises two unrelated
    scopes, never lets two transactions into one.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"{campaign_id}\0{scope}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def load_scope(session: Session, campaign: Campaign, scope: str) -> Scope:
    """The scope's open batches (oldest first) with their files."""
    batches = list(session.exec(
        select(Batch).where(Batch.campaign_id == campaign.id, Batch.scope == scope,
                            col(Batch.status).in_([s.value for s in OPEN_BATCH_STATUSES]))
        .order_by(col(Batch.created_at), col(Batch.id))))
    files: dict[str, list[IngestFile]] = {b.id: [] for b in batches}
    if batches:
        for f in session.exec(select(IngestFile).where(col(IngestFile.batch_id).in_(files))):
            files[f.batch_id or ""].append(f)
    return Scope(campaign=campaign, name=scope, batches=batches, files=files)


def late_batch(session: Session, row: IngestFile) -> Batch | None:
    """The newest batch of the scope that stopped waiting for this named file."""
    # A cancelled batch gave up on its missing files: they are not awaited any more.
    closed = [s.value for s in (*OPEN_BATCH_STATUSES, BatchStatus.CANCELLED)]
    query = (select(Batch).where(Batch.campaign_id == row.campaign_id, Batch.scope == row.scope,
                                 col(Batch.csv_file_id).is_not(None),
                                 col(Batch.status).not_in(closed))
             .order_by(col(Batch.created_at).desc()))
    for batch in session.exec(query):
        if row.name in batch.missing:
            return batch
    return None


def eligible_orphans(session: Session, scope: Scope, batch: Batch) -> list[IngestFile]:
    """Audio files of the scope left waiting in failed batches that this CSV names."""
    named = {r["file_name"] for r in batch.manifest_rows}
    present = {f.name for f in scope.files.get(batch.id, [])}
    query = (select(IngestFile).join(Batch, col(Batch.id) == col(IngestFile.batch_id))
             .where(IngestFile.campaign_id == scope.campaign.id, IngestFile.scope == scope.name,
                    IngestFile.kind == FileKind.AUDIO.value,
                    IngestFile.status == FileStatus.DETECTED.value,
                    Batch.status == BatchStatus.FAILED.value)
             .order_by(col(IngestFile.created_at)))
    orphans: list[IngestFile] = []
    for f in session.exec(query):
        if f.name in named and f.name not in present:
            orphans.append(f)
            present.add(f.name)
    return orphans
