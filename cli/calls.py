"""``ingestd call …``: look at calls: metadata, transcript, check results, score."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import col, select

from cli.campaigns import JsonOpt, find_campaign
from cli.context import app_context
from cli.output import emit, emit_table
from ingestd import errors
from ingestd.models import Call, CallStatus
from ingestd.views import call_view

app = typer.Typer(help="Inspect and process calls.", no_args_is_help=True)

CampaignFilter = Annotated[str | None, typer.Option("--campaign", help="Campaign slug.")]


@app.command("list")
def list_calls(ctx: typer.Context, campaign: CampaignFilter = None,
               status: Annotated[CallStatus | None, typer.Option("--status")] = None,
               as_json: JsonOpt = False) -> None:
    """List calls, newest first."""
    with app_context(ctx).db.session() as session:
        query = select(Call).order_by(col(Call.created_at).desc())
        if campaign:
            query = query.where(Call.campaign_id == find_campaign(session, campaign).id)
        if status:
            query = query.where(Call.status == status.value)
        rows = [call_view(session, c, with_details=False) for c in session.exec(query).all()]
        emit(rows, as_json, ("id", "campaign", "source", "status", "file_name", "agent_code",
                             "score", "flagged"))


@app.command("show")
def show_call(ctx: typer.Context, call_id: str, as_json: JsonOpt = False) -> None:
    """Show a call: metadata, transcript, check results, score and flags."""
    with app_context(ctx).db.session() as session:
        call = session.get(Call, call_id)
        if call is None:
            raise errors.NotFound(f"no call {call_id!r}")
        view = call_view(session, call)
    if as_json:
        emit(view, True)
        return
    emit(view, False, skip=("transcript", "checks", "versions"))
    typer.echo("\nchecks:")
    emit_table(view["checks"], ("name", "result", "reason"))
    typer.echo("\ntranscript:")
    for u in view["transcript"]:
        typer.echo(f"  [{u['start']:7.2f}-{u['end']:7.2f}] {u['speaker']:>8}: {u['text']}")
