"""The bulk job behind ``ingestd upload``: plan the files against the CSV, upload them in
parallel through the HTTP API, and keep the ``BulkJob`` row's counts.

Files are matched to the CSV by name (NFC), as a CSV batch matches SFTP files: a named file
gets its row's metadata; an unnamed one is uploaded with none (or skipped when the campaign
requires a CSV); named files that are absent are reported as missing. ``429`` is retried after
``Retry-After``, connection errors and ``5xx`` with backoff. Cancelling stops starting new files
and aborts the ones still sending (the server keeps nothing of those); a file whose bytes were
all sent is waited for, so every call that exists is counted.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from batch import manifest
from ingestd import audio, errors
from ingestd.clock import Clock
from ingestd.db import Database
from ingestd.models import BulkJob, BulkJobStatus

SOURCE_HEADER = "X-Ingestd-Source"


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    name: str  # NFC, as the server and the CSV compare names
    size: int
    metadata: dict[str, str]


@dataclass
class Plan:
    files: list[PlannedFile] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}
    missing: list[str] = field(default_factory=list)  # named by the CSV, not given
    warnings: list[str] = field(default_factory=list)


def plan_upload(paths: list[Path], csv_path: Path | None, csv_required: bool) -> Plan:
    """Walk ``paths`` and match the audio files to the CSV rows by name."""
    if csv_required and csv_path is None:
        raise errors.IngestError("the campaign requires a CSV manifest: give --csv FILE")
    rows: dict[str, Any] = {}
    plan = Plan()
    if csv_path is not None:
        found = manifest.parse_manifest(csv_path.read_bytes())
        for row in found.rows:
            rows.setdefault(row.file_name, row)  # the first row naming a file wins
        plan.warnings = [*found.warnings, *(f"{r.file_name}: {w}" for r in found.rows
                                            for w in r.warnings)]
    seen: dict[str, Path] = {}
    for path in _walk(paths, csv_path):
        name = unicodedata.normalize("NFC", path.name)
        reason = _skip_reason(path, name, seen, rows, csv_required)
        if reason:
            plan.skipped.append({"name": str(path), "reason": reason})
            continue
        seen[name] = path
        row = rows.get(name)
        meta = {k: str(v) for k, v in row.metadata.items()} if row else {}
        plan.files.append(PlannedFile(path, name, path.stat().st_size, meta))
    plan.missing = [name for name in rows if name not in seen]
    return plan


def _walk(paths: list[Path], csv_path: Path | None) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    skip = csv_path.resolve() if csv_path else None
    return [p for p in found if p.resolve() != skip]


def _skip_reason(path: Path, name: str, seen: dict[str, Path], rows: dict[str, Any],
                 csv_required: bool) -> str | None:
    if not audio.is_audio_name(name):
        return f"not an audio file ({path.suffix or 'no extension'})"
    if name in seen:
        return f"same file name as {seen[name]}"
    if csv_required and name not in rows:
        return "not named in the CSV (the campaign requires one)"
    return None


# --- uploading one file over HTTP -------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    result: str  # imported, duplicate, failed, cancelled
    size: int
    call_id: str | None = None
    reason: str | None = None


class _Cancelled(Exception):
    """The operator cancelled the job while this file was being sent."""


class _CountingFile:
    """The file as httpx reads it: counts bytes for progress, stops when cancelled."""

    def __init__(self, fh: Any, cancel: threading.Event, on_bytes: Callable[[int], None]):
        self.fh, self.cancel, self.on_bytes = fh, cancel, on_bytes

    def read(self, size: int = -1) -> bytes:
        if self.cancel.is_set():
            raise _Cancelled()
        data = self.fh.read(size)
        self.on_bytes(len(data))
        return data

    def seek(self, *args: Any) -> int:
        return self.fh.seek(*args)

    def tell(self) -> int:
        return self.fh.tell()

    def fileno(self) -> int:
        return self.fh.fileno()


class Uploader:
    """Posts files to ``/api/v1/calls/upload``; retries 429 (Retry-After), 5xx and drops."""

    def __init__(self, base_url: str, key: str, *, max_attempts: int = 8,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 600.0) -> None:
        self.base_url = base_url
        self.cancel = threading.Event()
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.client = httpx.Client(headers={"X-API-Key": key, SOURCE_HEADER: "BULK"},
                                   timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self.client.close()

    def check_reachable(self) -> None:
        try:
            self.client.get(f"{self.base_url}/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            raise errors.IngestError(f"cannot reach the ingestd HTTP API at {self.base_url} "
                                     f"({exc}); is `ingestd serve` running with http "
                                     "enabled?") from exc

    def upload(self, planned: PlannedFile, on_bytes: Callable[[int], None]) -> Outcome:
        """Upload one file, retrying what may pass later; never raises."""
        reason = "not attempted"
        for attempt in range(self.max_attempts):
            if self.cancel.is_set():
                return Outcome(planned.name, "cancelled", planned.size, reason="cancelled")
            sent = [0]

            def count(n: int, sent: list[int] = sent) -> None:
                sent[0] += n
                on_bytes(n)

            try:
                response = self._post(planned, count)
            except _Cancelled:
                on_bytes(-sent[0])
                return Outcome(planned.name, "cancelled", planned.size, reason="cancelled")
            except httpx.HTTPError as exc:
                on_bytes(-sent[0])
                reason, wait_for = f"connection failed: {exc}", min(2.0 ** attempt, 30.0)
            else:
                outcome, wait_for, reason = _classify(planned, response)
                if outcome is not None:
                    return outcome
                on_bytes(-sent[0])
            self.sleep(wait_for)
        return Outcome(planned.name, "failed", planned.size, reason=f"gave up: {reason}")

    def _post(self, planned: PlannedFile, count: Callable[[int], None]) -> httpx.Response:
        with planned.path.open("rb") as fh:
            files = {"file": (planned.name, _CountingFile(fh, self.cancel, count))}
            return self.client.post(f"{self.base_url}/api/v1/calls/upload", files=files,
                                    data=planned.metadata)


def _classify(planned: PlannedFile, response: httpx.Response
              ) -> tuple[Outcome | None, float, str]:
    """``(final outcome, or None to retry after the delay, reason)``."""
    error = _error(response)
    if response.status_code == 201:
        call_id = response.json()["data"]["call_id"]
        return Outcome(planned.name, "imported", planned.size, call_id=call_id), 0, ""
    if response.status_code == 409:
        return Outcome(planned.name, "duplicate", planned.size,
                       call_id=error.get("existing_call_id"), reason=error.get("message")), 0, ""
    if response.status_code == 429:
        retry = response.headers.get("Retry-After", "1")
        return None, float(retry) if retry.isdigit() else 1.0, "rate limited"
    if response.status_code >= 500:
        return None, 2.0, f"server error {response.status_code}: {error.get('message')}"
    reason = f"{error.get('code', response.status_code)}: {error.get('message', response.text)}"
    return Outcome(planned.name, "failed", planned.size, reason=reason), 0, reason


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        return dict(response.json().get("error") or {})
    except ValueError:
        return {}


# --- the BulkJob row ----------------------------------------------------------------------


class BulkJobRecorder:
    """Keeps the job's row current: counts while running, the summary at the end."""

    def __init__(self, db: Database, clock: Clock, campaign_id: str, plan: Plan) -> None:
        self.db, self.clock, self.plan = db, clock, plan
        self.last_write = 0.0
        job = BulkJob(campaign_id=campaign_id, status=BulkJobStatus.QUEUED.value,
                      total_files=len(plan.files), total_bytes=sum(f.size for f in plan.files),
                      created_at=clock.now(), updated_at=clock.now())
        with db.session() as session:
            session.add(job)
        self.job_id = job.id

    def start(self) -> None:
        self._update(status=BulkJobStatus.PROCESSING.value)

    def record(self, outcomes: list[Outcome], force: bool = False) -> None:
        if force or time.monotonic() - self.last_write >= 1.0:
            self.last_write = time.monotonic()
            self._update(**_counts(outcomes))

    def finish(self, outcomes: list[Outcome], cancelled: bool) -> dict[str, Any]:
        counts = _counts(outcomes)
        if cancelled:
            status = BulkJobStatus.CANCELLED
        elif self.plan.files and not counts["done_files"] and not counts["duplicate_files"]:
            status = BulkJobStatus.FAILED
        else:
            status = BulkJobStatus.COMPLETED
        summary = self._summary(outcomes, status)
        self._update(status=status.value, summary=summary, finished_at=self.clock.now(),
                     **counts)
        return summary

    def _summary(self, outcomes: list[Outcome], status: BulkJobStatus) -> dict[str, Any]:
        by = {r: [o for o in outcomes if o.result == r] for r in ("imported", "duplicate",
                                                                    "failed", "cancelled")}
        return {"status": status.value, "files": len(self.plan.files),
                "imported": len(by["imported"]), "duplicates": len(by["duplicate"]),
                "failed": [{"name": o.name, "reason": o.reason} for o in by["failed"]],
                "skipped": self.plan.skipped, "missing": self.plan.missing,
                "not_started": len(self.plan.files) - len(outcomes) + len(by["cancelled"]),
                "bytes": sum(o.size for o in by["imported"]), "warnings": self.plan.warnings}

    def _update(self, **values: Any) -> None:
        with self.db.session() as session:
            job = session.get(BulkJob, self.job_id)
            assert job is not None
            for key, value in values.items():
                setattr(job, key, value)
            job.updated_at = self.clock.now()


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {"done_files": sum(o.result == "imported" for o in outcomes),
            "failed_files": sum(o.result == "failed" for o in outcomes),
            "duplicate_files": sum(o.result == "duplicate" for o in outcomes),
            "done_bytes": sum(o.size for o in outcomes if o.result == "imported")}
