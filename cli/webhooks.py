"""``ingestd webhook …``: a campaign's webhooks and their delivery log.

What is sent and how it is signed: ``pipeline.webhooks``.
The signing secret is shown once, when the webhook is added (``--secret`` to choose it, else a
random one); listings never show it.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

import typer
from sqlmodel import col, select

from cli.campaigns import JsonOpt, find_campaign
from cli.context import app_context
from cli.output import emit
from ingestd import errors
from ingestd.models import Webhook, WebhookDelivery, WebhookEvent
from pipeline.webhooks import delivery_view, webhook_view

app = typer.Typer(help="Manage webhooks and see their deliveries.", no_args_is_help=True)

CampaignOpt = Annotated[str, typer.Option("--campaign", help="Campaign slug.")]
DELIVERY_COLUMNS = ("id", "webhook_id", "event", "status", "attempts", "last_status_code",
                    "last_error", "created_at", "delivered_at")


@app.command("add")
def add(ctx: typer.Context, campaign: CampaignOpt,
        url: Annotated[str, typer.Option("--url", help="Where events are POSTed.")],
        event: Annotated[list[WebhookEvent] | None, typer.Option(
            "--event", help="An event to send (repeat; default: all).")] = None,
        secret: Annotated[str | None, typer.Option(
            "--secret", help="HMAC-SHA256 signing secret (default: a random one).")] = None,
        as_json: JsonOpt = False) -> None:
    """Add a webhook to a campaign; prints the signing secret once, as the last line."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.IngestError(f"not an http(s) URL: {url!r}")
    context = app_context(ctx)
    with context.db.session() as session:
        campaign_id = find_campaign(session, campaign).id
        hook = Webhook(campaign_id=campaign_id, url=url, secret=secret or secrets.token_hex(32),
                       events=sorted({e.value for e in event or ()}),
                       created_at=context.clock.now())
        session.add(hook)
    view = webhook_view(hook) | {"secret": hook.secret}
    if as_json:
        emit(view, True)
        return
    emit(webhook_view(hook), False)
    typer.echo(hook.secret)


@app.command("list")
def list_webhooks(ctx: typer.Context, campaign: CampaignOpt, as_json: JsonOpt = False) -> None:
    """A campaign's webhooks (without secrets)."""
    with app_context(ctx).db.session() as session:
        campaign_id = find_campaign(session, campaign).id
        hooks = session.exec(select(Webhook).where(Webhook.campaign_id == campaign_id)
                             .order_by(col(Webhook.created_at))).all()
        rows = [webhook_view(hook) for hook in hooks]
    emit(rows, as_json, ("id", "url", "events", "active", "created_at"))


@app.command("deliveries")
def deliveries(ctx: typer.Context,
               webhook: Annotated[str | None, typer.Option("--webhook", help="Webhook id.")]
               = None,
               limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
               as_json: JsonOpt = False) -> None:
    """The delivery log, newest first: status, attempts, last status code and error."""
    with app_context(ctx).db.session() as session:
        query = select(WebhookDelivery).order_by(col(WebhookDelivery.created_at).desc())
        if webhook:
            if session.get(Webhook, webhook) is None:
                raise errors.NotFound(f"no webhook {webhook!r}")
            query = query.where(WebhookDelivery.webhook_id == webhook)
        rows = [delivery_view(d) for d in session.exec(query.limit(limit)).all()]
    emit(rows, as_json, DELIVERY_COLUMNS)
