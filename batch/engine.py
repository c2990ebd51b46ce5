"""The batch state machine's decisions (SPEC §3 "Batches"), as pure functions over plain values.

The sweeper loads rows, asks these functions what should happen and writes the answer back;
nothing here touches the database or the disk, so every rule can be tested on its own.

Choices where the SPEC is silent:
- A CSV manifest's own file row belongs to its batch and is ``COMPLETED`` once parsed (a CSV that
  cannot be used is ``FAILED`` with the reason, and so is the batch it opened).
- A CSV with a header but no rows names nothing: it is treated as unusable ("CSV has no rows")
  rather than as a batch that binds nothing.
- When a ``csv_mode = required`` batch fails at its deadline, its audio files stay ``DETECTED``
  and stay in that failed batch (so ``batch show`` still lists them), and remain eligible: a CSV
  arriving later that names them moves them into its own batch.
- On a CSV takeover, the files the CSV does not name move to a fresh CSV-less batch that keeps
  the old deadline: they already waited that window for a manifest.
- Every file seen in a scope belongs to a batch; unsupported files go with the CSV-less batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ingestd.models import BatchStatus, CsvMode, FileKind, FileStatus

CSV_REQUIRED_REASON = "CSV required but none arrived within the batch window"
NO_ROWS_REASON = "CSV has no rows: it names no files"
CSV_WAITING_STATUSES = frozenset({BatchStatus.WAITING_FOR_FILES})
CSV_LESS_STATUSES = frozenset({BatchStatus.DETECTING, BatchStatus.WAITING_FOR_CSV})


@dataclass(frozen=True)
class BatchView:
    """What the decisions need to know about one batch.

    ``named`` and ``present`` may be live views of the router's indexes (dict keys, sets), so
    a membership test is O(1) whatever the batch's size; the decisions only read them.
    """

    id: str
    status: BatchStatus
    has_csv: bool
    named: Collection[str] = ()  # file names the CSV names, in CSV order
    present: Collection[str] = frozenset()  # names of the files in the batch


@dataclass(frozen=True)
class FileView:
    id: str
    name: str
    kind: FileKind
    status: FileStatus


@dataclass(frozen=True)
class Outcome:
    """A batch's next status, why, and (for CSV batches) the named files that never came."""

    status: BatchStatus
    reason: str | None = None
    missing: tuple[str, ...] = ()


def csv_less_status(csv_mode: str) -> BatchStatus:
    """Status of an open batch without a CSV."""
    if csv_mode == CsvMode.REQUIRED:
        return BatchStatus.WAITING_FOR_CSV
    return BatchStatus.DETECTING


def awaited(named: Iterable[str], present: Collection[str]) -> list[str]:
    """The files a CSV names that are not in its batch (yet), in CSV order."""
    return [name for name in named if name not in present]


def csv_batch_status(awaited_names: Collection[str]) -> BatchStatus:
    """An open CSV batch processes at once when none of the files it names is awaited any
    more (routing keeps that set as files arrive: deciding costs O(1) per file)."""
    if not awaited_names:
        return BatchStatus.PROCESSING
    return BatchStatus.WAITING_FOR_FILES


def skip_reason(name: str) -> str:
    """Why a file of an unsupported kind is skipped, naming its extension."""
    suffix = PurePosixPath(name).suffix.lower()
    return f"unsupported file type {suffix}" if suffix else "unsupported file type (no extension)"


def csv_batch_for(name: str, batches: Sequence[BatchView]) -> str | None:
    """The open CSV batch an arriving audio file joins: the oldest that names it and lacks it."""
    for batch in batches:
        if (batch.has_csv and batch.status in CSV_WAITING_STATUSES and name in batch.named
                and name not in batch.present):
            return batch.id
    return None


def csv_less_batch(batches: Sequence[BatchView]) -> str | None:
    """The scope's open CSV-less batch, if there is one."""
    for batch in batches:
        if not batch.has_csv and batch.status in CSV_LESS_STATUSES:
            return batch.id
    return None


def takeover_split(named: Iterable[str], files: Sequence[FileView]) -> tuple[list[str], list[str]]:
    """Ids of the CSV-less batch's files a CSV binds (named audio) and of those that move out."""
    wanted = set(named)
    bound = [f.id for f in files if f.kind == FileKind.AUDIO and f.name in wanted]
    moved = [f.id for f in files if f.id not in bound]
    return bound, moved


def at_deadline(batch: BatchView, csv_mode: str) -> Outcome:
    """What an open batch becomes when its window ends."""
    if batch.has_csv:
        return Outcome(BatchStatus.PROCESSING, missing=tuple(awaited(batch.named, batch.present)))
    if csv_mode == CsvMode.REQUIRED:
        return Outcome(BatchStatus.FAILED, CSV_REQUIRED_REASON)
    return Outcome(BatchStatus.PROCESSING)


def is_finished(files: Iterable[FileView]) -> bool:
    """A processing batch can close once none of its files waits for import."""
    return all(f.status in _TERMINAL for f in files)


def closing(files: Sequence[FileView], missing: Sequence[str]) -> Outcome:
    """The terminal status of a processing batch whose files are all terminal."""
    counted = [f for f in files if f.kind != FileKind.CSV]
    imported = sum(1 for f in counted if f.status == FileStatus.COMPLETED)
    problems = _problem_counts(counted, missing)
    if imported == len(counted) and not missing and counted:
        return Outcome(BatchStatus.COMPLETED, missing=tuple(missing))
    if imported == 0:
        if not counted:
            return Outcome(BatchStatus.FAILED, f"nothing imported: {problems}",
                           tuple(missing))
        return Outcome(BatchStatus.FAILED,
                       f"nothing imported: every file was rejected ({problems})", tuple(missing))
    return Outcome(BatchStatus.INCOMPLETE,
                   f"{imported} of {len(counted) + len(missing)} files imported; {problems}",
                   tuple(missing))


_TERMINAL = frozenset({FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.DUPLICATE,
                       FileStatus.SKIPPED})


def _problem_counts(files: Sequence[FileView], missing: Sequence[str]) -> str:
    parts = []
    for status, word in ((FileStatus.FAILED, "failed"), (FileStatus.DUPLICATE, "duplicate"),
                         (FileStatus.SKIPPED, "skipped")):
        count = sum(1 for f in files if f.status == status)
        if count:
            parts.append(f"{count} {word}")
    if missing:
        parts.append(f"{len(missing)} missing ({', '.join(missing)})")
    return ", ".join(parts) or "no files arrived"
