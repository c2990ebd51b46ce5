"""Finding complete files in the landing tree without server events.

The SFTP server records its uploads itself on a clean close. Files that appear any other way
(present at start-up, dropped in by other tools) are found here by walking the tree and recorded
through the same ``LandingRecorder``: such a file counts as complete once its size and mtime
stayed the same for ``sftp.stable_seconds`` — each change re-records it, which pushes its
``stable_at`` out. A file whose newest row is already terminal with the same size and mtime was
handled before but its landing copy outlived a crash: it is reported for clean-up, never
detected again. Blocking (disk, database): call from a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path, PurePosixPath
from stat import S_ISDIR, S_ISREG

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from ingestd.db import Database
from ingestd.landing import (
    ACTIVE_FILE_STATUSES,
    LandingChange,
    LandingRecorder,
    is_temporary,
)
from ingestd.models import TERMINAL_FILE_STATUSES, IngestFile

log = logging.getLogger(__name__)
QUERY_CHUNK = 500


@dataclass(frozen=True)
class LandingEntry:
    """One file found in the landing tree."""

    rel_path: str  # POSIX, relative to the landing root
    size: int
    mtime_ns: int


class Action(Enum):
    RECORD = "record"  # never seen, or a new file at a path whose previous file was handled
    REFRESH = "refresh"  # waiting row, but the file changed since: not stable yet
    CLEAN_UP = "clean_up"  # handled already; only its landing copy is left over
    NOTHING = "nothing"


@dataclass(frozen=True)
class RowState:
    """What detection needs of a landing path's newest row, read as plain columns: the
    interval walk reads it for every file in the tree, and loading whole ORM rows for the
    thousands of files of an upload burst was a third of the main process's CPU."""

    id: str
    status: str
    size: int
    mtime_ns: int | None
    created_at: datetime


def action_for(entry: LandingEntry, newest: RowState | IngestFile | None) -> Action:
    """What to do about a landing file given the newest row recorded for its path."""
    if newest is None:
        return Action.RECORD
    same = same_file(newest, entry.size, entry.mtime_ns)
    if newest.status in TERMINAL_FILE_STATUSES:
        return Action.CLEAN_UP if same else Action.RECORD
    if newest.status in ACTIVE_FILE_STATUSES and not same:
        return Action.REFRESH
    return Action.NOTHING


def same_file(row: RowState | IngestFile, size: int, mtime_ns: int | None) -> bool:
    """Whether the row describes these bytes; a row without an mtime is judged by size alone."""
    if row.size != size:
        return False
    return row.mtime_ns is None or mtime_ns is None or row.mtime_ns == mtime_ns


def walk_landing(root: Path, ignore_patterns: list[str],
                 under: Path | None = None) -> list[LandingEntry]:
    """Every non-temporary file under ``root`` (temporary-named folders are not entered), or
    only those in its subfolder ``under``; paths are relative to ``root``."""
    entries: list[LandingEntry] = []
    for folder, dirs, names in os.walk(under or root):
        dirs[:] = sorted(d for d in dirs if not is_temporary(d, ignore_patterns))
        for name in sorted(names):
            if is_temporary(name, ignore_patterns):
                continue
            path = Path(folder, name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed between listing and stat: nothing to detect
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                entries.append(LandingEntry(rel, stat.st_size, stat.st_mtime_ns))
    return entries


def scan(db: Database, recorder: LandingRecorder, root: Path,
         ignore_patterns: list[str]) -> list[IngestFile]:
    """Record new or changed landing files; return the rows whose leftover copies need clean-up."""
    return detect(db, recorder, walk_landing(root, ignore_patterns))


def check_paths(db: Database, recorder: LandingRecorder, root: Path, rel_paths: Iterable[str],
                ignore_patterns: list[str]) -> list[IngestFile]:
    """:func:`scan` for just these landing paths (the ones a filesystem event named).

    Costs one ``stat`` per path instead of a walk of the whole tree, so an event-driven sweep
    stays cheap however many files wait in the landing folders.
    """
    entries: list[LandingEntry] = []
    for rel_path in sorted(set(rel_paths)):
        parts = PurePosixPath(rel_path).parts
        if any(is_temporary(part, ignore_patterns) for part in parts):
            continue
        try:
            stat = os.stat(root / rel_path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone again: nothing to detect
        if S_ISREG(stat.st_mode):
            entries.append(LandingEntry(rel_path, stat.st_size, stat.st_mtime_ns))
        elif S_ISDIR(stat.st_mode):  # a folder moved in whole: one event for all its files
            entries.extend(walk_landing(root, ignore_patterns, under=root / rel_path))
    return detect(db, recorder, entries)


def detect(db: Database, recorder: LandingRecorder,
           entries: list[LandingEntry]) -> list[IngestFile]:
    """Record the entries that are new or changed; return the rows of leftover copies.

    The new and changed files are recorded ``QUERY_CHUNK`` to a transaction: a start-up scan
    that finds 20,000 files writes 40 transactions, not 20,000.
    """
    newest = newest_rows(db, [entry.rel_path for entry in entries])
    leftover_ids: list[str] = []
    changes: list[tuple[LandingChange, Action]] = []
    for entry in entries:
        row = newest.get(entry.rel_path)
        action = action_for(entry, row)
        if action in (Action.RECORD, Action.REFRESH):
            change = LandingChange("landed", entry.rel_path, entry.size, entry.mtime_ns)
            changes.append((change, action))
        elif action == Action.CLEAN_UP and row is not None:
            leftover_ids.append(row.id)
    for start in range(0, len(changes), QUERY_CHUNK):
        chunk = changes[start:start + QUERY_CHUNK]
        file_ids = recorder.apply([change for change, _ in chunk])
        for (change, action), file_id in zip(chunk, file_ids, strict=True):
            if file_id and action == Action.RECORD:
                log.info("file_detected file_id=%s path=%s", file_id, change.rel_path)
    return rows_by_id(db, leftover_ids)


def newest_rows(db: Database, rel_paths: Iterable[str]) -> dict[str, RowState]:
    """The most recently created row of each landing path that has one."""
    paths = list(rel_paths)
    found: dict[str, RowState] = {}
    table = IngestFile.__table__
    columns = (table.c.landing_path, table.c.id, table.c.status, table.c.size,
               table.c.mtime_ns, table.c.created_at)
    with db.session() as session:
        for start in range(0, len(paths), QUERY_CHUNK):
            chunk = paths[start:start + QUERY_CHUNK]
            query = sa_select(*columns).where(table.c.landing_path.in_(chunk))
            for path, *state in session.execute(query):
                row = RowState(*state)
                held = found.get(path)
                if held is None or _age_key(row) > _age_key(held):
                    found[path] = row
    return found


def rows_by_id(db: Database, file_ids: list[str]) -> list[IngestFile]:
    """Whole rows of these files (for the few that detection hands on)."""
    if not file_ids:
        return []
    with db.session() as session:
        return list(session.exec(select(IngestFile).where(col(IngestFile.id).in_(file_ids))))


def _age_key(row: RowState) -> tuple:
    # Rows created within the same instant: the one still in progress is the newer.
    return (row.created_at, row.status not in TERMINAL_FILE_STATUSES)
