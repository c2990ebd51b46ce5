"""``ingestd batch …``: look at batches and the files in them, cancel or retry one, watch them."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from batch import control
from cli.campaigns import CampaignFilter, JsonOpt, newest_first
from cli.context import AppContext, app_context
from cli.output import emit, emit_table
from ingestd import errors
from ingestd.models import Batch, BatchStatus
from ingestd.views import batch_view

app = typer.Typer(help="Inspect, cancel, retry and watch batches.", no_args_is_help=True)

@app.command("list")
def list_batches(ctx: typer.Context, campaign: CampaignFilter = None,
                 status: Annotated[BatchStatus | None, typer.Option("--status")] = None,
                 as_json: JsonOpt = False) -> None:
    """List batches, newest first."""
    with app_context(ctx).db.session() as session:
        rows = [batch_view(session, b, with_files=False)
                for b in newest_first(session, Batch, campaign,
                                          status.value if status else None)]
        emit(rows, as_json, ("id", "campaign", "scope", "status", "csv_file", "deadline",
                             "reason"))


@app.command("show")
def show_batch(ctx: typer.Context, batch_id: str, as_json: JsonOpt = False) -> None:
    """Show a batch with each file's status and reason."""
    with app_context(ctx).db.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise errors.NotFound(f"no batch {batch_id!r}")
        view = batch_view(session, batch)
    if as_json:
        emit(view, True)
        return
    emit(view, False, skip=("files",))
    typer.echo("")
    emit_table(view["files"], ("name", "status", "reason", "call_id", "call_status"))


@app.command("cancel")
def cancel_batch(ctx: typer.Context, batch_id: str, as_json: JsonOpt = False) -> None:
    """Cancel the rest of a batch: files not yet imported are skipped, imported ones stay."""
    context = app_context(ctx)
    skipped = control.cancel(context.db, context.clock, batch_id)
    with context.db.session() as session:
        view = batch_view(session, session.get(Batch, batch_id))
    if as_json:
        emit(view, True)
        return
    typer.echo(f"batch {batch_id} cancelled: {len(skipped)} file(s) not yet imported skipped")


@app.command("retry")
def retry_batch(ctx: typer.Context, batch_id: str, as_json: JsonOpt = False) -> None:
    """Re-run a FAILED or INCOMPLETE batch's failed files (whose bytes are kept) in a new batch."""
    context = app_context(ctx)
    settings = context.settings
    result = control.retry(context.db, context.clock, settings.landing_path,
                           settings.rejected_path, batch_id)
    with context.db.session() as session:
        view = batch_view(session, session.get(Batch, result.batch_id))
    if as_json:
        emit(view, True)
        return
    typer.echo(f"batch {batch_id}: {len(result.retried)} file(s) retried in batch "
               f"{result.batch_id}: {', '.join(result.retried)}")
    for name, why in result.not_retried.items():
        typer.echo(f"  not retried: {name}: {why}")


BOARD_COLUMNS = ("id", "campaign", "scope", "status", "csv_file", "files", "waiting",
                 "imported", "rejected", "missing", "seconds_left")


@app.command("watch")
def watch_batches(ctx: typer.Context,
                  interval: Annotated[float, typer.Option(
                      "--interval", min=0.2, help="Seconds between refreshes.")] = 2.0,
                  once: Annotated[bool, typer.Option(
                      "--once", help="Print the table once and exit.")] = False,
                  as_json: JsonOpt = False) -> None:
    """A live table of the batches still open or processing (Ctrl-C ends it)."""
    context = app_context(ctx)
    if once or as_json:
        rows = _board_rows(context)
        emit(rows, as_json, BOARD_COLUMNS)
        return
    with Live(_board_table(_board_rows(context)), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_board_table(_board_rows(context)), refresh=True)
        except KeyboardInterrupt:
            pass


def _board_rows(context: AppContext) -> list[dict]:
    with context.db.session() as session:
        rows = control.board(session, context.clock.now())
    return [{**asdict(r), "seconds_left": round(r.seconds_left)} for r in rows]


def _board_table(rows: list[dict]) -> Table:
    table = Table(title=f"open batches ({len(rows)}), {datetime.now(UTC):%H:%M:%S} UTC")
    for column in BOARD_COLUMNS:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in BOARD_COLUMNS))
    return table
