"""``ingestd batch …``: look at batches and the files in them."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import col, select

from cli.campaigns import JsonOpt, find_campaign
from cli.context import app_context
from cli.output import emit, emit_table
from ingestd import errors
from ingestd.models import Batch, BatchStatus
from ingestd.views import batch_view

app = typer.Typer(help="Inspect batches.", no_args_is_help=True)

CampaignFilter = Annotated[str | None, typer.Option("--campaign", help="Campaign slug.")]


@app.command("list")
def list_batches(ctx: typer.Context, campaign: CampaignFilter = None,
                 status: Annotated[BatchStatus | None, typer.Option("--status")] = None,
                 as_json: JsonOpt = False) -> None:
    """List batches, newest first."""
    with app_context(ctx).db.session() as session:
        query = select(Batch).order_by(col(Batch.created_at).desc())
        if campaign:
            query = query.where(Batch.campaign_id == find_campaign(session, campaign).id)
        if status:
            query = query.where(Batch.status == status.value)
        rows = [batch_view(session, b, with_files=False) for b in session.exec(query).all()]
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
