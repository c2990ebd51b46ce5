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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ingestd.audio import is_audio_name
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import CallSource, Campaign, FileKind, FileStatus, IngestFile

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
        where = LandedPath.parse(rel_path)
        if where is None or is_temporary(where.name, self.ignore_patterns):
            return None
        try:
            return self._record(where, size, mtime_ns, source)
        except IntegrityError:
            # Someone recorded the same file at the same moment (the SFTP close and a landing
            # scan): the unique index kept one row; refresh that one instead.
            return self._record(where, size, mtime_ns, source)

    def _record(self, where: LandedPath, size: int, mtime_ns: int | None,
                source: CallSource) -> str | None:
        now = self.clock.now()
        stable_at = now + timedelta(seconds=self.stable_seconds)
        with self.db.session() as session:
            campaign = session.exec(select(Campaign).where(Campaign.slug == where.slug)).first()
            if campaign is None:
                return None
            row = active_row(session, where.rel_path)
            if row is None:
                row = IngestFile(campaign_id=campaign.id, scope=where.scope, name=where.name,
                                 landing_path=where.rel_path, kind=file_kind(where.name).value,
                                 source=source.value, created_at=now)
            row.size, row.mtime_ns, row.stable_at, row.updated_at = size, mtime_ns, stable_at, now
            session.add(row)
            session.flush()  # a lost race surfaces here, inside the retry's reach
            return row.id

    def writing(self, rel_path: str) -> None:
        """A writer (re)opened the path: a waiting row for it is not complete any more."""
        with self.db.session() as session:
            row = active_row(session, rel_path)
            if row is not None and row.batch_id is None:
                row.stable_at = None
                row.updated_at = self.clock.now()
                session.add(row)


    def removed(self, rel_path: str) -> None:
        """The file left the landing path (deleted or renamed away) before it was taken.

        A row not yet in a batch is forgotten: nothing was decided about it. A row already in
        a batch stays; the batch engine reports it as having disappeared.
        """
        with self.db.session() as session:
            row = active_row(session, rel_path)
            if row is not None and row.batch_id is None:
                session.delete(row)


def active_row(session: Session, rel_path: str) -> IngestFile | None:
    """The not-yet-taken row (``DETECTED`` or ``MATCHED``) for a landing path, if any."""
    query = (select(IngestFile)
             .where(IngestFile.landing_path == rel_path,
                    col(IngestFile.status).in_(ACTIVE_FILE_STATUSES))
             .order_by(col(IngestFile.created_at).desc()))
    return session.exec(query).first()
