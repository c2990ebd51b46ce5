"""``ingestd api-key …``: create and rotate a campaign's HTTP API keys.

The key is printed once, as the last line of stdout (``--json``: ``{"key": …}``); only its hash
is stored, so a lost key cannot be shown again — rotate it instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.campaigns import JsonOpt
from cli.context import app_context
from cli.output import emit_json
from ingestd import api_keys

app = typer.Typer(help="Manage campaign API keys for the HTTP API.", no_args_is_help=True)

CampaignOpt = Annotated[str, typer.Option("--campaign", help="Campaign slug.")]


@app.command("create")
def create(ctx: typer.Context, campaign: CampaignOpt, as_json: JsonOpt = False) -> None:
    """Create an API key for the campaign (other keys stay valid)."""
    app_ctx = app_context(ctx)
    _print_key(api_keys.create(app_ctx.db, campaign, app_ctx.clock), campaign, as_json,
               "created")


@app.command("rotate")
def rotate(ctx: typer.Context, campaign: CampaignOpt, as_json: JsonOpt = False) -> None:
    """Replace the campaign's API keys by a new one; the old keys stop working at once."""
    app_ctx = app_context(ctx)
    _print_key(api_keys.rotate(app_ctx.db, campaign, app_ctx.clock), campaign, as_json,
               "rotated (previous keys revoked)")


def _print_key(key: str, campaign: str, as_json: bool, what: str) -> None:
    if as_json:
        emit_json({"key": key})
        return
    typer.echo(f"API key for campaign {campaign} {what}. It is shown only this once:")
    typer.echo(key)
