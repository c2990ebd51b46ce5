"""The landing tree and the file rows that describe it: the hand-over point to the batch engine.

Completed uploads live at ``<landing>/<slug>/<subfolders>/<name>``. Whoever puts a file there —
the SFTP server on a clean close, the sweeper finding a file dropped in by other means — records
it through :class:`LandingRecorder` as a ``DETECTED`` file row with ``stable_at``, the moment it
counts as complete if nothing touches it again. The batch engine takes rows whose moment has
come. Temporary names (``sftp.ignore_patterns``) are never recorded; their rename to a final name
is what records the file.
"""

from __future__ import annotations

import fnmatch
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ingestd.audio import is_audio_name
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import CallSource, Campaign, FileKind, FileStatus, IngestFile, new_id

ACTIVE_FILE_STATUSES = (FileStatus.DETECTED.value, FileStatus.MATCHED.value)


@dataclass(frozen=True)
class LandedPath:
    """A landing-relative path split into what the batch engine needs."""

    rel_path: str  # "<slug>/<sub>/<name>", POSIX
    slug: str
    scope: str  # the folder: "<slug>" or "<slug>/<sub>"
    name: str

    @classmethod
    def parse(cls, rel_path: str) -> LandedPath | None:
        """None for paths that are not inside a campaign folder."""
        parts = PurePosixPath(rel_path).parts
        if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            return None
        return cls(rel_path="/".join(parts), slug=parts[0], scope="/".join(parts[:-1]),
                   name=parts[-1])


def file_kind(name: str) -> FileKind:
    """Audio by extension (any case), ``.csv`` a manifest, anything else unsupported."""
    if is_audio_name(name):
        return FileKind.AUDIO
    if name.lower().endswith(".csv"):
        return FileKind.CSV
    return FileKind.OTHER


def is_temporary(name: str, patterns: list[str]) -> bool:
    """True when ``name`` matches one of the temporary-name patterns (case-insensitive)."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


@dataclass(frozen=True)
class LandingChange:
    """One change to the landing tree, to be recorded (see :meth:`LandingRecorder.apply`)."""

    kind: str  # "landed", "writing" or "removed"
    rel_path: str
    size: int = 0
    mtime_ns: int | None = None
    source: CallSource = CallSource.SFTP


class LandingRecorder:
    """Records landed files as rows; the only writer of new ``DETECTED`` file rows."""

    def __init__(self, db: Database, clock: Clock, stable_seconds: float,
                 ignore_patterns: list[str]) -> None:
        self.db = db
        self.clock = clock
        self.stable_seconds = stable_seconds
        self.ignore_patterns = ignore_patterns

    def landed(self, rel_path: str, size: int, mtime_ns: int | None,
               source: CallSource = CallSource.SFTP) -> str | None:
        """Record (or refresh) a complete-looking file; return its row id, None if ignored."""
        return self.apply([LandingChange("landed", rel_path, size, mtime_ns, source)])[0]

    def removed(self, rel_path: str) -> None:
        """The file left the landing path (deleted or renamed away) before it was taken.

        A row not yet in a batch is forgotten: nothing was decided about it. A row already in
        a batch stays; the batch engine reports it as having disappeared.
        """
        self.apply([LandingChange("removed", rel_path)])

    def apply(self, changes: list[LandingChange]) -> list[str | None]:
        """Record ``changes`` in order, in one transaction; for each, the id of the row a
        ``landed`` change recorded (None for the other kinds and for ignored paths).

        One transaction for many changes is what keeps a burst of small uploads or a start-up
        scan of 20,000 files cheap. If it loses a race (the SFTP close and a landing scan
        recording the same file at once: the unique index keeps one row), the changes are
        applied again: first the whole group once more (it then finds and refreshes the rows
        that won), and only if that loses too, each change in a transaction of its own.
        """
        for _ in range(2):
            with suppress(IntegrityError):
                return self._apply(changes)
        results: list[str | None] = []
        for change in changes:
            try:
                results += self._apply([change])
            except IntegrityError:
                results += self._apply([change])
        return results

    def _apply(self, changes: list[LandingChange]) -> list[str | None]:
        wheres = [LandedPath.parse(change.rel_path) for change in changes]
        recordable = {w.rel_path: w for w in wheres
                      if w is not None and not is_temporary(w.name, self.ignore_patterns)}
        if not recordable:
            return [None] * len(changes)
        now = self.clock.now()
        stable_at = now + timedelta(seconds=self.stable_seconds)
        with self.db.session() as session:
            # Two reads for the whole group; the changes then apply in order to what they found
            # (a path landed, reopened and removed within one group ends up right), and the
            # outcome is written with one statement per kind. Plain SQL statements, not ORM
            # objects: this runs for every uploaded file.
            campaigns = campaign_ids(session, {w.slug for w in recordable.values()})
            plan = _Plan(active_rows(session, set(recordable)))
            results: list[str | None] = []
            for change, where in zip(changes, wheres, strict=True):
                if where is None or where.rel_path not in recordable:
                    results.append(None)
                elif change.kind == "landed" and where.slug in campaigns:
                    values = dict(size=change.size, mtime_ns=change.mtime_ns,
                                  stable_at=stable_at, updated_at=now)
                    results.append(plan.land(where, campaigns[where.slug], change, values))
                else:
                    if change.kind == "writing":
                        plan.unsettle(where.rel_path, now)
                    elif change.kind == "removed":
                        plan.forget(where.rel_path)
                    results.append(None)
            plan.write(session)  # a lost race surfaces here, inside apply's reach
        return results


class _Plan:
    """What one :meth:`LandingRecorder.apply` writes: rows to delete, update and insert."""

    def __init__(self, active: dict[str, dict[str, Any]]) -> None:
        self.active = active  # landing path -> its waiting row's columns, as read or changed
        self.inserts: dict[str, dict[str, Any]] = {}  # by landing path
        self.updates: dict[str, dict[str, Any]] = {}  # by row id
        self.deletes: set[str] = set()

    def land(self, where: LandedPath, campaign_id: str, change: LandingChange,
             values: dict[str, Any]) -> str:
        row = self.active.get(where.rel_path)
        if row is None:
            row = dict(id=new_id("fil"), campaign_id=campaign_id, scope=where.scope,
                       name=where.name, landing_path=where.rel_path,
                       kind=file_kind(where.name).value, source=change.source.value,
                       status=FileStatus.DETECTED.value, warnings=[], batch_id=None,
                       created_at=values["updated_at"])
            self.active[where.rel_path] = self.inserts[where.rel_path] = row
        row.update(values)
        if where.rel_path not in self.inserts:
            self.updates[row["id"]] = row
        return row["id"]

    def unsettle(self, rel_path: str, now: datetime) -> None:
        row = self.active.get(rel_path)
        if row is not None and row["batch_id"] is None:
            row.update(stable_at=None, updated_at=now)
            if rel_path not in self.inserts:
                self.updates[row["id"]] = row

    def forget(self, rel_path: str) -> None:
        row = self.active.get(rel_path)
        if row is None or row["batch_id"] is not None:
            return
        del self.active[rel_path]
        if self.inserts.pop(rel_path, None) is None:
            self.updates.pop(row["id"], None)
            self.deletes.add(row["id"])

    def write(self, session: Session) -> None:
        table = IngestFile.__table__
        if self.deletes:
            session.execute(delete(table).where(table.c.id.in_(self.deletes)))
        if self.updates:
            session.execute(
                update(table).where(table.c.id == bindparam("row_id")).values(
                    size=bindparam("size"), mtime_ns=bindparam("mtime_ns"),
                    stable_at=bindparam("stable_at"), updated_at=bindparam("updated_at")),
                [dict(row_id=row["id"], size=row["size"], mtime_ns=row["mtime_ns"],
                      stable_at=row["stable_at"], updated_at=row["updated_at"])
                 for row in self.updates.values()])
        if self.inserts:
            session.execute(insert(table), list(self.inserts.values()))


def campaign_ids(session: Session, slugs: set[str]) -> dict[str, str]:
    """Campaign id by slug, for the slugs that exist."""
    query = select(Campaign.slug, Campaign.id).where(col(Campaign.slug).in_(slugs))
    return {slug: campaign_id for slug, campaign_id in session.exec(query)}


def active_rows(session: Session, rel_paths: set[str]) -> dict[str, dict[str, Any]]:
    """The not-yet-taken row (``DETECTED`` or ``MATCHED``) of each landing path that has one:
    the columns the recorder changes, by landing path."""
    query = (select(IngestFile.landing_path, IngestFile.id, IngestFile.batch_id,
                    IngestFile.size, IngestFile.mtime_ns, IngestFile.stable_at,
                    IngestFile.updated_at)
             .where(col(IngestFile.landing_path).in_(rel_paths),
                    col(IngestFile.status).in_(ACTIVE_FILE_STATUSES)))
    return {path: dict(id=row_id, batch_id=batch_id, size=size, mtime_ns=mtime_ns,
                       stable_at=stable_at, updated_at=updated_at)
            for path, row_id, batch_id, size, mtime_ns, stable_at, updated_at
            in session.exec(query)}
