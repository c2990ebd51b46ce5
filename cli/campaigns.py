"""``ingestd campaign …``: create, inspect and change campaigns."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from sqlmodel import Session, col, select

from cli.context import app_context
from cli.output import emit
from ingestd import errors
from ingestd.models import Campaign, CsvMode
from ingestd.views import campaign_view

app = typer.Typer(help="Manage campaigns.", no_args_is_help=True)

SLUG_PATTERN = re.compile(r"^[a-z0-9_-]+$")
TRANSCRIBERS = ("pocketsphinx", "deepgram", "assemblyai")
ANALYZERS = ("rules", "anthropic")
LIST_COLUMNS = ("slug", "name", "csv_mode", "batch_window", "auto_process", "archived",
                "transcriber", "analyzer", "flag_threshold")

CsvOpt = Annotated[CsvMode | None, typer.Option("--csv", help="Is a CSV manifest required?")]
WindowOpt = Annotated[int | None, typer.Option("--batch-window", min=1, help="Seconds.")]
AutoOpt = Annotated[bool | None, typer.Option("--auto-process/--no-auto-process")]
TranscriberOpt = Annotated[str | None, typer.Option("--transcriber")]
AnalyzerOpt = Annotated[str | None, typer.Option("--analyzer")]
ThresholdOpt = Annotated[int | None, typer.Option("--flag-threshold", min=0, max=100)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only.")]


@app.command("create")
def create(ctx: typer.Context, name: str,
           slug: Annotated[str, typer.Option("--slug", help="Folder name: a-z 0-9 - _")],
           csv: CsvOpt = None, batch_window: WindowOpt = None, auto_process: AutoOpt = None,
           transcriber: TranscriberOpt = None, analyzer: AnalyzerOpt = None,
           flag_threshold: ThresholdOpt = None, as_json: JsonOpt = False) -> None:
    """Create a campaign; its SFTP folder is its slug."""
    app_ctx = app_context(ctx)
    if not SLUG_PATTERN.match(slug):
        raise errors.IngestError(
            f"invalid slug {slug!r}: use lowercase letters, digits, '-' and '_'")
    defaults = app_ctx.settings.pipeline
    campaign = Campaign(name=name, slug=slug, created_at=app_ctx.clock.now(),
                        transcriber=defaults.transcriber, analyzer=defaults.analyzer)
    _apply(campaign, csv=csv, batch_window=batch_window, auto_process=auto_process,
           transcriber=transcriber, analyzer=analyzer, flag_threshold=flag_threshold)
    with app_ctx.db.session() as session:
        if session.exec(select(Campaign).where(Campaign.slug == slug)).first():
            raise errors.Conflict(f"a campaign with slug {slug!r} already exists")
        session.add(campaign)
    emit(campaign_view(campaign), as_json)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List campaigns."""
    with app_context(ctx).db.session() as session:
        rows = session.exec(select(Campaign).order_by(col(Campaign.slug))).all()
        emit([campaign_view(c) for c in rows], as_json, LIST_COLUMNS)


@app.command("show")
def show(ctx: typer.Context, slug: str, as_json: JsonOpt = False) -> None:
    """Show one campaign."""
    with app_context(ctx).db.session() as session:
        emit(campaign_view(find_campaign(session, slug)), as_json)


@app.command("update")
def update(ctx: typer.Context, slug: str, csv: CsvOpt = None, batch_window: WindowOpt = None,
           auto_process: AutoOpt = None, transcriber: TranscriberOpt = None,
           analyzer: AnalyzerOpt = None, flag_threshold: ThresholdOpt = None,
           as_json: JsonOpt = False) -> None:
    """Change a campaign's settings; options not given stay as they are."""
    with app_context(ctx).db.session() as session:
        campaign = find_campaign(session, slug)
        _apply(campaign, csv=csv, batch_window=batch_window, auto_process=auto_process,
               transcriber=transcriber, analyzer=analyzer, flag_threshold=flag_threshold)
        session.add(campaign)
    emit(campaign_view(campaign), as_json)


@app.command("archive")
def archive(ctx: typer.Context, slug: str) -> None:
    """Archive a campaign: its folder disappears from SFTP and uploads are refused."""
    _set_archived(ctx, slug, True)


@app.command("unarchive")
def unarchive(ctx: typer.Context, slug: str) -> None:
    """Bring an archived campaign back."""
    _set_archived(ctx, slug, False)


def find_campaign(session: Session, slug: str) -> Campaign:
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    if campaign is None:
        raise errors.NotFound(f"no campaign with slug {slug!r}")
    return campaign


def newest_first(session: Session, model: Any, campaign: str | None,
                 status: str | None) -> list[Any]:
    """Rows of ``model`` (a table with campaign_id, status, created_at), newest first,
    optionally of one campaign (by slug) and one status."""
    query = select(model).order_by(col(model.created_at).desc())
    if campaign:
        query = query.where(model.campaign_id == find_campaign(session, campaign).id)
    if status:
        query = query.where(model.status == status)
    return list(session.exec(query).all())


CampaignFilter = Annotated[str | None, typer.Option("--campaign", help="Campaign slug.")]


def _set_archived(ctx: typer.Context, slug: str, archived: bool) -> None:
    with app_context(ctx).db.session() as session:
        campaign = find_campaign(session, slug)
        campaign.archived = archived
        session.add(campaign)
    typer.echo(f"campaign {slug} {'archived' if archived else 'unarchived'}")


def _apply(campaign: Campaign, **options: Any) -> None:
    if options["transcriber"] is not None and options["transcriber"] not in TRANSCRIBERS:
        raise errors.IngestError(f"unknown transcriber {options['transcriber']!r}: "
                                 f"choose one of {', '.join(TRANSCRIBERS)}")
    if options["analyzer"] is not None and options["analyzer"] not in ANALYZERS:
        raise errors.IngestError(f"unknown analyzer {options['analyzer']!r}: "
                                 f"choose one of {', '.join(ANALYZERS)}")
    csv_mode = options.pop("csv")
    if csv_mode is not None:
        campaign.csv_mode = CsvMode(csv_mode).value
    for key, value in options.items():
        if value is not None:
            setattr(campaign, key, value)
