"""``ingestd check …``: the quality checks a campaign's calls are analyzed against."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from sqlmodel import col, select

from cli.campaigns import JsonOpt, find_campaign
from cli.context import app_context
from cli.output import emit
from ingestd import errors
from ingestd.models import CheckKind, QualityCheck, Speaker
from ingestd.views import check_view

app = typer.Typer(help="Manage quality checks.", no_args_is_help=True)

CampaignOpt = Annotated[str, typer.Option("--campaign", help="Campaign slug.")]


@app.command("add")
def add(ctx: typer.Context, campaign: CampaignOpt,
        name: Annotated[str, typer.Option("--name")],
        kind: Annotated[CheckKind, typer.Option("--kind")],
        phrase: Annotated[list[str] | None, typer.Option("--phrase", help="Repeatable.")] = None,
        pattern: Annotated[str | None, typer.Option("--pattern", help="A regex.")] = None,
        question: Annotated[str | None, typer.Option("--question", help="For llm.")] = None,
        speaker: Annotated[Speaker | None, typer.Option("--speaker")] = None,
        within: Annotated[float | None, typer.Option("--within", min=0, help="Seconds.")] = None,
        weight: Annotated[float, typer.Option("--weight", min=0)] = 1.0,
        critical: Annotated[bool, typer.Option("--critical")] = False) -> None:
    """Add a check to a campaign."""
    app_ctx = app_context(ctx)
    phrases = [p for p in phrase or [] if p.strip()]
    _validate(kind, phrases, pattern, question, speaker)
    with app_ctx.db.session() as session:
        owner = find_campaign(session, campaign)
        taken = session.exec(select(QualityCheck).where(
            QualityCheck.campaign_id == owner.id, QualityCheck.name == name)).first()
        if taken:
            raise errors.Conflict(f"campaign {campaign} already has a check named {name!r}")
        session.add(QualityCheck(
            campaign_id=owner.id, name=name, kind=kind.value, phrases=phrases, pattern=pattern,
            question=question, speaker=speaker.value if speaker else None,
            within_seconds=within, weight=weight, critical=critical,
            created_at=app_ctx.clock.now()))
    typer.echo(f"check {name} added to {campaign}")


@app.command("list")
def list_(ctx: typer.Context, campaign: CampaignOpt, as_json: JsonOpt = False) -> None:
    """List a campaign's checks."""
    with app_context(ctx).db.session() as session:
        owner = find_campaign(session, campaign)
        checks = session.exec(select(QualityCheck).where(QualityCheck.campaign_id == owner.id)
                              .order_by(col(QualityCheck.id))).all()
        emit([check_view(c) for c in checks], as_json,
             ("name", "kind", "phrases", "pattern", "speaker", "within", "weight", "critical"))


def _validate(kind: CheckKind, phrases: list[str], pattern: str | None,
              question: str | None, speaker: Speaker | None) -> None:
    if kind in (CheckKind.PHRASE, CheckKind.FORBIDDEN_PHRASE) and not phrases:
        raise errors.IngestError(f"a {kind.value} check needs at least one --phrase")
    if kind == CheckKind.REGEX:
        if not pattern:
            raise errors.IngestError("a regex check needs --pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.IngestError(f"--pattern is not a valid regular expression: {exc}") \
                from exc
    if kind == CheckKind.LLM and not question:
        raise errors.IngestError("an llm check needs --question")
    if speaker == Speaker.UNKNOWN:
        raise errors.IngestError("--speaker must be agent or customer")
