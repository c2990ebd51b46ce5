"""``ingestd call …``: look at calls (metadata, transcript, check results, score) and put them
back in the pipeline (``retry``, ``process``, ``reprocess``; see ``pipeline.queue``)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.campaigns import CampaignFilter, JsonOpt, find_campaign, newest_first
from cli.context import AppContext, app_context
from cli.output import emit, emit_table
from ingestd import errors
from ingestd.models import Call, CallStatus
from ingestd.views import call_view
from pipeline import queue

app = typer.Typer(help="Inspect and process calls.", no_args_is_help=True)

@app.command("list")
def list_calls(ctx: typer.Context, campaign: CampaignFilter = None,
               status: Annotated[CallStatus | None, typer.Option("--status")] = None,
               as_json: JsonOpt = False) -> None:
    """List calls, newest first."""
    with app_context(ctx).db.session() as session:
        rows = [call_view(session, c, with_details=False)
                for c in newest_first(session, Call, campaign,
                                          status.value if status else None)]
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
    typer.echo("\nversions:")
    emit_table(view["versions"], ("kind", "version", "provider", "created_at"))


@app.command("retry")
def retry_call(ctx: typer.Context, call_id: str, as_json: JsonOpt = False) -> None:
    """Queue a FAILED call again, from the stage that failed."""
    context = app_context(ctx)
    call = queue.retry(context.db, context.clock, call_id)
    _queued(context, call.id, as_json, f"call {call.id} queued again from {call.stage}")


@app.command("process")
def process_calls(ctx: typer.Context,
                  campaign: Annotated[str, typer.Option("--campaign", help="Campaign slug.")],
                  as_json: JsonOpt = False) -> None:
    """Queue a campaign's PENDING calls (for campaigns with auto-process off)."""
    context = app_context(ctx)
    with context.db.session() as session:
        campaign_id = find_campaign(session, campaign).id
    count = queue.process_campaign(context.db, context.clock, campaign_id)
    if as_json:
        emit({"campaign": campaign, "queued": count}, True)
    else:
        typer.echo(f"{count} call(s) of {campaign} queued")


@app.command("reprocess")
def reprocess_call(ctx: typer.Context, call_id: str,
                   transcription: Annotated[bool, typer.Option(
                       "--transcription", help="New transcript, then a new analysis.")] = False,
                   analysis: Annotated[bool, typer.Option(
                       "--analysis", help="New analysis of the current transcript.")] = False,
                   as_json: JsonOpt = False) -> None:
    """Process a call again; earlier transcript and analysis versions are kept."""
    if transcription and analysis:
        raise errors.IngestError("give --transcription or --analysis, not both")
    redo = queue.Redo.ANALYSIS if analysis else queue.Redo.TRANSCRIPTION
    context = app_context(ctx)
    call = queue.reprocess(context.db, context.clock, call_id, redo)
    _queued(context, call.id, as_json, f"call {call.id} queued for a new {redo.value}")


def _queued(context: AppContext, call_id: str, as_json: bool, message: str) -> None:
    if not as_json:
        typer.echo(message)
        return
    with context.db.session() as session:
        emit(call_view(session, session.get(Call, call_id), with_details=False), True)
