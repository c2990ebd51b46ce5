"""Putting ready files into batches: the database side of the engine's routing decisions.

A file is ready when its row is ``DETECTED``, belongs to no batch and its ``stable_at`` has
passed. Ready files are routed per scope, up to ``ROUTE_CHUNK`` in one transaction that re-reads
each row locked, so two sweeps never route the same file twice. File rows are read and written
as plain values (:class:`FileRow`, one ``UPDATE`` by primary key for all of a transaction's
changes), not as ORM objects. CSVs are routed before audio
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import JSON, Select, bindparam, text, update
from sqlalchemy import select as sa_select
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
# Files routed per transaction. Each transaction reloads the scope's open batches (a 20,000-row
# manifest decodes in ~70 ms) and the names of their files, so bigger chunks are cheaper; the
# row locks of a chunk are held for about a second at most (20,000 files: 3.4 s CPU in 4
# chunks against 4.1 s in 10 of 2,000 and 8.6 s in 40 of 500).
ROUTE_CHUNK = 5000
# Rounds of one routing call: files that turned stable during a round are routed by the next.
ROUTE_ROUNDS = 5


@dataclass
class FileRow:
    """What routing reads and decides of one file row, as plain values.

    Each routed file loaded as an ORM object and flushed again made routing 20,000 files take
    4.3 s; with plain values, written together by :meth:`Scope.write_files`, 2.6 s.
    """

    id: str
    kind: str
    name: str
    status: str
    batch_id: str | None
    reason: str | None
    warnings: list[str]
    csv_row: dict[str, Any] | None
    updated_at: datetime

    def values(self) -> dict[str, Any]:
        """The columns routing may have changed, for :data:`WRITE_FILE`."""
        return {"row_id": self.id, "status": self.status, "batch_id": self.batch_id,
                "reason": self.reason, "warnings": self.warnings, "csv_row": self.csv_row,
                "updated_at": self.updated_at}


FILE_COLUMNS = (IngestFile.id, IngestFile.kind, IngestFile.name, IngestFile.status,
                IngestFile.batch_id, IngestFile.reason, IngestFile.warnings, IngestFile.csv_row,
                IngestFile.updated_at)


_file_table = IngestFile.__table__
# One statement for all of a transaction's changed rows (executemany; the ORM's bulk UPDATE
# took as long again as SQLite itself). A csv_row of None is SQL NULL, as the ORM writes it,
# not JSON 'null'.
WRITE_FILE = update(_file_table).where(_file_table.c.id == bindparam("row_id")).values(
    status=bindparam("status"), batch_id=bindparam("batch_id"), reason=bindparam("reason"),
    warnings=bindparam("warnings"), updated_at=bindparam("updated_at"),
    csv_row=bindparam("csv_row", type_=JSON(none_as_null=True)))


def select_files() -> Select:
    """A query for :class:`FileRow` values (add the conditions)."""
    return sa_select(*FILE_COLUMNS)


@dataclass
class BatchIndex:
    """The names routing decides on for one batch, kept current as the transaction changes it.

    Built once per routing transaction and updated at every change (a file joins, a CSV takes
    the batch over, files move out), so a routing decision costs the same for the first file
    of a 20,000-file batch as for the last.
    """

    named: dict[str, dict[str, Any]]  # file name -> its manifest row, in CSV order
    # Names of the batch's files, CSVs left out. Of a CSV-less batch only the files routed in
    # this transaction: its names decide nothing, so they are not read (:func:`load_scope`).
    present: set[str]
    awaited: set[str]  # named but not present yet

    @classmethod
    def of(cls, rows: list[dict[str, Any]], present: Iterable[str]) -> BatchIndex:
        named: dict[str, dict[str, Any]] = {}
        for row in rows:
            named.setdefault(row["file_name"], row)
        there = set(present)
        return cls(named=named, present=there, awaited=named.keys() - there)

    def add(self, name: str) -> None:
        self.present.add(name)
        self.awaited.discard(name)


@dataclass
class Scope:
    """A scope's open batches with their indexes, loaded inside one routing transaction."""

    campaign: Campaign
    name: str  # "<slug>" or "<slug>/<sub>/…"
    batches: list[Batch]
    index: dict[str, BatchIndex]  # batch id -> its names
    _late: dict[str, Batch] | None = None  # named file -> closed batch that still misses it
    _files: dict[str, FileRow] = field(default_factory=dict)  # every file row read, by id
    _changed: set[str] = field(default_factory=set)  # ids of the rows not written yet

    def views(self) -> list[engine.BatchView]:
        return [engine.BatchView(id=b.id, status=BatchStatus(b.status),
                                 has_csv=b.csv_file_id is not None,
                                 named=self.index[b.id].named.keys(),
                                 present=self.index[b.id].present) for b in self.batches]

    def batch(self, batch_id: str) -> Batch:
        return next(b for b in self.batches if b.id == batch_id)

    def joined(self, batch: Batch, row: FileRow) -> None:
        """``row`` now belongs to ``batch``."""
        if row.kind != FileKind.CSV:
            self.index[batch.id].add(row.name)

    def read_files(self, session: Session, query: Select) -> list[FileRow]:
        """The file rows ``query`` finds (made with :func:`select_files`), after this
        transaction's changes are written; a row read before is the same object again."""
        self.write_files(session)
        return [self._files.setdefault(values[0], FileRow(*values))
                for values in session.execute(query)]

    def changed(self, row: FileRow, now: datetime | None) -> None:
        """``row`` was changed (``now``: its new ``updated_at``, None to keep it)."""
        if now is not None:
            row.updated_at = now
        self._changed.add(row.id)

    def write_files(self, session: Session) -> None:
        """Write the changed file rows: one UPDATE by primary key for all of them (the new
        batches they point at are flushed first)."""
        session.flush()
        if self._changed:
            session.execute(WRITE_FILE, [self._files[i].values() for i in self._changed])
            self._changed.clear()

    def late_batch(self, session: Session, name: str) -> Batch | None:
        """The newest closed batch of the scope that stopped waiting for this named file."""
        if self._late is None:
            self._late = late_batches(session, self.campaign.id, self.name)
        return self._late.get(name)

    def no_longer_missing(self, name: str) -> None:
        if self._late is not None:
            self._late.pop(name, None)


class NamedFile(Protocol):
    """What :func:`view_of` reads of a file: an ORM row, or a row of just these columns."""

    name: str
    kind: str


def view_of(batch: Batch, files: Iterable[NamedFile]) -> engine.BatchView:
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

        One transaction per scope and ``ROUTE_CHUNK`` files: the chunk's rows are read (locked)
        in one query and the scope's open batches once, as :class:`BatchIndex` name sets that
        each routed file updates, so routing stays linear in the batch size. The scope lock is
        taken before any file row lock, and a transaction holds one scope only: two sweepers
        cannot wait on each other.

        Files that turn stable while a round routes are routed by another round (each file
        once per call, ``ROUTE_ROUNDS`` at most): a large scan records its files over a second
        or two, and the part that was not stable yet at the first round would otherwise wait
        for the next interval tick.
        """
        finished: list[str] = []
        tried: set[str] = set()
        for _ in range(ROUTE_ROUNDS):
            ready = [r for r in self._ready() if r[0] not in tried]
            if not ready:
                break
            tried.update(r[0] for r in ready)
            finished += self._route_round(ready)
        return finished

    def _route_round(self, ready: list[tuple[str, FileKind, str, str, str]]) -> list[str]:
        finished: list[str] = []
        by_scope: dict[tuple[str, str], list[tuple[str, FileKind, str]]] = {}
        for file_id, kind, rel_path, campaign_id, scope in ready:
            by_scope.setdefault((campaign_id, scope), []).append((file_id, kind, rel_path))
        for (campaign_id, scope_name), files in by_scope.items():
            for start in range(0, len(files), ROUTE_CHUNK):
                chunk = files[start:start + ROUTE_CHUNK]
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
            rows = locked_rows(session, scope, [file_id for file_id, _, _ in chunk])
            for file_id, _, _ in chunk:
                row = rows.get(file_id)
                if row is None or row.batch_id is not None or row.status != FileStatus.DETECTED:
                    continue  # routed meanwhile by another sweep
                self._route(session, scope, row, parsed.get(file_id))
                if row.status not in (FileStatus.DETECTED, FileStatus.MATCHED):
                    finished.append(row.id)
            scope.write_files(session)
        return finished

    def _ready(self) -> list[tuple[str, FileKind, str, str, str]]:
        now = self.clock.now()
        query = select(IngestFile.id, IngestFile.kind, IngestFile.landing_path,
                       IngestFile.campaign_id, IngestFile.scope, IngestFile.stable_at,
                       IngestFile.created_at).where(
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

    def _route(self, session: Session, scope: Scope, row: FileRow,
               parsed: Manifest | errors.ManifestError | None) -> None:
        if row.kind == FileKind.CSV:
            assert parsed is not None
            self._route_csv(session, scope, row, parsed)
        elif row.kind == FileKind.AUDIO:
            self._route_audio(session, scope, row)
        else:
            self._set_file(scope, row, FileStatus.SKIPPED, reason=engine.skip_reason(row.name))
            self._join_csv_less(session, scope, row)

    def _route_audio(self, session: Session, scope: Scope, row: FileRow) -> None:
        target = engine.csv_batch_for(row.name, scope.views())
        if target is not None:
            batch = scope.batch(target)
            self._bind(scope, row, batch)
            self._refresh_csv_status(scope, batch)
        elif (late := scope.late_batch(session, row.name)) is not None:
            self._open_late(session, scope, row, late)
        else:
            self._join_csv_less(session, scope, row)

    def _route_csv(self, session: Session, scope: Scope, row: FileRow,
                   parsed: Manifest | errors.ManifestError) -> None:
        problem = parsed.message if isinstance(parsed, errors.ManifestError) else (
            engine.NO_ROWS_REASON if not parsed.rows else None)
        if problem is not None or isinstance(parsed, errors.ManifestError):
            batch = self._open(session, scope, BatchStatus.FAILED, csv=row)
            batch.reason = f"unusable CSV {row.name}: {problem}"
            batch.closed_at = self.clock.now()
            self._set_file(scope, row, FileStatus.FAILED, reason=problem, batch=batch)
            log.info("batch_closed batch_id=%s status=FAILED reason=%s", batch.id, batch.reason)
            return
        rows = [r.as_json() for r in parsed.rows]
        batch = self._take_over(session, scope, row, rows)
        self._set_file(scope, row, FileStatus.COMPLETED, batch=batch)
        row.warnings = list(parsed.warnings)
        for orphan in eligible_orphans(session, scope, batch):
            self._bind(scope, orphan, batch)
        self._refresh_csv_status(scope, batch)

    def _take_over(self, session: Session, scope: Scope, csv_row: FileRow,
                   rows: list[dict]) -> Batch:
        """The CSV takes the open CSV-less batch over, or opens its own batch."""
        old_id = engine.csv_less_batch(scope.views())
        if old_id is None:
            return self._open(session, scope, BatchStatus.WAITING_FOR_FILES, csv=csv_row,
                              rows=rows)
        batch = scope.batch(old_id)
        batch.csv_file, batch.csv_file_id, batch.manifest_rows = csv_row.name, csv_row.id, rows
        # the files routed into it in this transaction are among them (written first)
        files = scope.read_files(session, select_files().where(IngestFile.batch_id == batch.id))
        views = [engine.FileView(f.id, f.name, FileKind(f.kind), FileStatus(f.status))
                 for f in files]
        bound, moved = engine.takeover_split([r["file_name"] for r in rows], views)
        fresh = self._open(session, scope, engine.csv_less_status(scope.campaign.csv_mode),
                           deadline=batch.deadline) if moved else None
        scope.index[batch.id] = BatchIndex.of(rows, ())
        for f in files:
            if f.id in bound:
                self._bind(scope, f, batch)
            elif fresh is not None:
                f.batch_id = fresh.id
                scope.changed(f, None)
                scope.joined(fresh, f)
        log.info("batch_taken_over batch_id=%s csv_file_id=%s moved_to=%s", batch.id,
                 csv_row.id, fresh.id if fresh else None)
        return batch

    def _open_late(self, session: Session, scope: Scope, row: FileRow, old: Batch) -> None:
        """A named file arriving after its batch stopped waiting: a batch of its own."""
        manifest_row = next(r for r in old.manifest_rows if r["file_name"] == row.name)
        old.missing = [name for name in old.missing if name != row.name]
        old.updated_at = self.clock.now()
        session.add(old)
        scope.no_longer_missing(row.name)
        batch = self._open(session, scope, BatchStatus.PROCESSING, rows=[manifest_row])
        batch.csv_file, batch.csv_file_id = old.csv_file, old.csv_file_id
        self._bind(scope, row, batch)
        log.info("batch_processing batch_id=%s late_file_id=%s earlier_batch_id=%s",
                 batch.id, row.id, old.id)

    def _join_csv_less(self, session: Session, scope: Scope, row: FileRow) -> None:
        batch_id = engine.csv_less_batch(scope.views())
        if batch_id is None:
            batch = self._open(session, scope, engine.csv_less_status(scope.campaign.csv_mode))
        else:
            batch = scope.batch(batch_id)
        row.batch_id = batch.id
        scope.changed(row, self.clock.now())
        scope.joined(batch, row)

    def _bind(self, scope: Scope, row: FileRow, batch: Batch) -> None:
        """Match an audio file to its row of the batch's manifest."""
        entry = scope.index[batch.id].named[row.name]
        row.batch_id = batch.id
        row.status = FileStatus.MATCHED.value
        row.csv_row = dict(entry["metadata"])
        row.warnings = [*row.warnings, *[w for w in entry["warnings"] if w not in row.warnings]]
        scope.changed(row, self.clock.now())
        scope.joined(batch, row)

    def _refresh_csv_status(self, scope: Scope, batch: Batch) -> None:
        if batch.status not in OPEN_BATCH_STATUSES:
            return
        index = scope.index[batch.id]
        status = engine.csv_batch_status(index.awaited)
        if status != batch.status:
            batch.status, batch.updated_at = status.value, self.clock.now()
            log.info("batch_status_changed batch_id=%s status=%s", batch.id, status.value)
            if status == BatchStatus.PROCESSING:
                log.info("batch_processing batch_id=%s files=%d", batch.id, len(index.present))

    def _open(self, session: Session, scope: Scope, status: BatchStatus, *,
              csv: FileRow | None = None, rows: list[dict] | None = None,
              deadline: datetime | None = None) -> Batch:
        now = self.clock.now()
        batch = Batch(
            campaign_id=scope.campaign.id, scope=scope.name, status=status.value,
            csv_file=csv.name if csv else None, csv_file_id=csv.id if csv else None,
            manifest_rows=rows or [], created_at=now, updated_at=now,
            deadline=deadline or now + timedelta(seconds=scope.campaign.batch_window))
        session.add(batch)
        scope.batches.append(batch)
        scope.index[batch.id] = BatchIndex.of(batch.manifest_rows, ())
        log.info("batch_opened batch_id=%s campaign_id=%s scope=%s status=%s csv_file=%s",
                 batch.id, batch.campaign_id, batch.scope, batch.status, batch.csv_file)
        return batch

    def _set_file(self, scope: Scope, row: FileRow, status: FileStatus, *,
                  reason: str | None = None, batch: Batch | None = None) -> None:
        row.status, row.reason = status.value, reason
        if batch is not None:
            row.batch_id = batch.id
        scope.changed(row, self.clock.now())


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
    """The scope's open batches (oldest first) with the names of their files.

    Only a CSV batch's names are read: they decide which named files it still awaits. A
    CSV-less batch awaits no name, and reading all of its names made every route pass cost as
    much as the batch is large: a long window of uploads made each pass slower as it filled.
    """
    batches = list(session.exec(
        select(Batch).where(Batch.campaign_id == campaign.id, Batch.scope == scope,
                            col(Batch.status).in_([s.value for s in OPEN_BATCH_STATUSES]))
        .order_by(col(Batch.created_at), col(Batch.id))))
    present: dict[str, list[str]] = {b.id: [] for b in batches}
    with_csv = [b.id for b in batches if b.csv_file_id is not None]
    if with_csv:
        query = select(IngestFile.batch_id, IngestFile.name).where(
            col(IngestFile.batch_id).in_(with_csv), IngestFile.kind != FileKind.CSV.value)
        for batch_id, name in session.exec(query):
            present[batch_id or ""].append(name)
    index = {b.id: BatchIndex.of(b.manifest_rows, present[b.id]) for b in batches}
    return Scope(campaign=campaign, name=scope, batches=batches, index=index)


def locked_rows(session: Session, scope: Scope, file_ids: list[str]) -> dict[str, FileRow]:
    """These file rows, read and locked in one query (in id order: no deadlock between two
    nodes locking overlapping chunks)."""
    query = (select_files().where(col(IngestFile.id).in_(file_ids))
             .order_by(col(IngestFile.id)).with_for_update())
    return {row.id: row for row in scope.read_files(session, query)}


def late_batches(session: Session, campaign_id: str, scope: str) -> dict[str, Batch]:
    """Per file name, the newest batch of the scope that stopped waiting for it: a closed CSV
    batch that lists it as missing. Only the batches that miss something are loaded whole."""
    # A cancelled batch gave up on its missing files: they are not awaited any more.
    closed = [s.value for s in (*OPEN_BATCH_STATUSES, BatchStatus.CANCELLED)]
    query = (select(Batch.id, Batch.missing)
             .where(Batch.campaign_id == campaign_id, Batch.scope == scope,
                    col(Batch.csv_file_id).is_not(None), col(Batch.status).not_in(closed))
             .order_by(col(Batch.created_at).desc()))
    found: dict[str, Batch] = {}
    for batch_id, missing in session.exec(query):
        if not missing:
            continue
        batch = session.get(Batch, batch_id)
        assert batch is not None
        for name in missing:
            found.setdefault(name, batch)
    return found


def eligible_orphans(session: Session, scope: Scope, batch: Batch) -> list[FileRow]:
    """Audio files of the scope left waiting in failed batches that this CSV names.

    The scope's failed batches first, then their waiting files by batch: joined in one query,
    SQLite read every waiting file of every open batch to find them.
    """
    index = scope.index[batch.id]
    present = set(index.present)
    failed = list(session.exec(
        select(Batch.id).where(Batch.campaign_id == scope.campaign.id, Batch.scope == scope.name,
                               Batch.status == BatchStatus.FAILED.value)))
    if not failed:
        return []
    query = (select_files()
             .where(col(IngestFile.batch_id).in_(failed), IngestFile.kind == FileKind.AUDIO.value,
                    IngestFile.status == FileStatus.DETECTED.value)
             .order_by(col(IngestFile.created_at)))
    orphans: list[FileRow] = []
    for f in scope.read_files(session, query):
        if f.name in index.named and f.name not in present:
            orphans.append(f)
            present.add(f.name)
    return orphans
