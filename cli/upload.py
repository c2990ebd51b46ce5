"""``ingestd upload PATH... --campaign SLUG [--csv FILE]``: a bulk job over the HTTP API.

The job is a ``BulkJob`` row (``QUEUED`` → ``PROCESSING`` → ``COMPLETED``/``FAILED``/
``CANCELLED``) with running counts (``cli/bulk.py`` does the work). Files go through the running
daemon's HTTP API like any integration's uploads (same validation, duplicates, rate limits),
marked ``X-Ingestd-Source: BULK`` so their calls get source ``BULK``. The job authenticates with
a key of its own, created in the database for the job and revoked when it ends: the operator
handles no key, and no ``INGESTD_*`` variable (those are settings) is involved. Ctrl-C cancels
the rest cleanly.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.bulk import BulkJobRecorder, Outcome, Plan, Uploader, plan_upload
from cli.campaigns import JsonOpt, find_campaign
from cli.context import AppContext, app_context
from cli.output import emit_json
from ingestd import api_keys, errors
from ingestd.models import BulkJobStatus, CsvMode

PathsArg = Annotated[list[Path], typer.Argument(help="Audio files or folders (recursive).",
                                                exists=True)]
CsvOpt = Annotated[Path | None, typer.Option("--csv", exists=True, dir_okay=False,
                                             help="Metadata manifest naming the files.")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="HTTP API base URL (default: from "
                                                          "the config's [http] host and port).")]
ParallelOpt = Annotated[int, typer.Option("--parallel", min=1, max=32,
                                          help="Uploads in flight at once.")]


def upload(ctx: typer.Context, paths: PathsArg,
           campaign: Annotated[str, typer.Option("--campaign", help="Campaign slug.")],
           csv: CsvOpt = None, url: UrlOpt = None, parallel: ParallelOpt = 4,
           as_json: JsonOpt = False) -> None:
    """Upload many recordings as one bulk job, with progress and a summary."""
    app_ctx = app_context(ctx)
    with app_ctx.db.session() as session:
        target = find_campaign(session, campaign)
    if target.archived:
        raise errors.IngestError(f"campaign {campaign!r} is archived: it accepts no uploads")
    plan = plan_upload(paths, csv, target.csv_mode == CsvMode.REQUIRED.value)
    base_url = (url or _default_url(app_ctx)).rstrip("/")
    recorder = BulkJobRecorder(app_ctx.db, app_ctx.clock, target.id, plan)
    key, key_id = api_keys.create_for_campaign_id(app_ctx.db, target.id, app_ctx.clock)
    uploader = Uploader(base_url, key)
    try:
        outcomes, cancelled = _run(uploader, plan, parallel, recorder)
    finally:
        uploader.close()
        api_keys.revoke(app_ctx.db, key_id, app_ctx.clock)
    summary = recorder.finish(outcomes, cancelled)
    _report(summary, recorder.job_id, as_json)


def _run(uploader: Uploader, plan: Plan, parallel: int,
         recorder: BulkJobRecorder) -> tuple[list[Outcome], bool]:
    uploader.check_reachable()
    recorder.start()
    progress = Progress(plan)
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="upload")
    submitted = [pool.submit(uploader.upload, f, progress.add_bytes) for f in plan.files]
    results: dict[Future[Outcome], Outcome] = {}
    pending, cancelled = set(submitted), False
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            results.update((future, future.result()) for future in done)
            recorder.record(list(results.values()))
            progress.show(list(results.values()))
    except KeyboardInterrupt:
        cancelled = True
        uploader.cancel.set()
        print("ingestd: cancelling: no new uploads; waiting for the ones in flight",
              file=sys.stderr, flush=True)
    pool.shutdown(wait=True, cancel_futures=True)
    outcomes = [results.get(f) or f.result() for f in submitted if f.done() and not f.cancelled()]
    progress.close(outcomes)
    return outcomes, cancelled


def _report(summary: dict[str, Any], job_id: str, as_json: bool) -> None:
    if as_json:
        emit_json({"job_id": job_id, **summary})
    else:
        typer.echo(f"job {job_id}: {summary['status']}")
        for key in ("files", "imported", "duplicates", "failed", "skipped", "missing",
                    "not_started", "bytes"):
            value = summary[key]
            typer.echo(f"  {key.ljust(11)} {len(value) if isinstance(value, list) else value}")
        for item in summary["failed"][:20]:
            typer.echo(f"  failed: {item['name']}: {item['reason']}")
    # sys.exit, not typer.Exit: the entry point runs click with standalone_mode=False, which
    # returns an Exit's code instead of exiting with it.
    if summary["status"] == BulkJobStatus.CANCELLED.value:
        sys.exit(130)
    if summary["status"] == BulkJobStatus.FAILED.value or summary["failed"]:
        print(f"ingestd: {len(summary['failed'])} of {summary['files']} files failed",
              file=sys.stderr)
        sys.exit(1)


def _default_url(app_ctx: AppContext) -> str:
    http = app_ctx.settings.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    return f"http://{host}:{http.port}"


class Progress:
    """Files, bytes and speed on stderr (also with ``--json``, whose JSON goes to stdout): a
    live bar on a terminal, a line every two seconds otherwise."""

    def __init__(self, plan: Plan) -> None:
        self.total_files = len(plan.files)
        self.total_bytes = sum(f.size for f in plan.files)
        self.sent = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.last_line = 0.0
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = _rich_bar(self.total_bytes)

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.sent += count

    def show(self, outcomes: list[Outcome], final: bool = False) -> None:
        line = (f"{len(outcomes)}/{self.total_files} files, {_mb(self.sent)} of "
                f"{_mb(self.total_bytes)}, {_mb(self.sent / self._elapsed())}/s")
        if self.bar is not None:
            self.bar[0].update(self.bar[1], completed=self.sent, description=line)
        elif final or time.monotonic() - self.last_line >= 2.0:
            print(f"upload: {line}", file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def close(self, outcomes: list[Outcome]) -> None:
        self.show(outcomes, final=True)
        if self.bar is not None:
            self.bar[0].stop()

    def _elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-3)


def _rich_bar(total: int) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TransferSpeedColumn(),
                   console=Console(stderr=True))
    task = bar.add_task("starting", total=total or 1)
    bar.start()
    return bar, task


def _mb(count: float) -> str:
    return f"{count / 1e6:.1f} MB"


# --- the plan: which files, with which metadata ------------------------------------------------


