"""The ``ingestd`` command: the daemon (``serve``) and the operator's tools."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli import access, api_keys, batches, calls, campaigns, checks, upload, webhooks
from cli.context import AppContext, app_context
from cli.output import emit
from ingestd import errors

app = typer.Typer(help="ingestd: SFTP-first ingestion of call recordings.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(campaigns.app, name="campaign")
app.add_typer(access.sftp_app, name="sftp-user")
app.add_typer(access.agent_app, name="agent")
app.add_typer(checks.app, name="check")
app.add_typer(batches.app, name="batch")
app.add_typer(calls.app, name="call")
app.add_typer(webhooks.app, name="webhook")
app.add_typer(api_keys.app, name="api-key")
app.command("upload")(upload.upload)


@app.callback()
def root(ctx: typer.Context,
         config: Annotated[str | None, typer.Option(
             "--config", envvar="INGESTD_CONFIG",
             help="TOML config file (default: ./ingestd.toml if present).")] = None) -> None:
    """Global options, given before the command."""
    ctx.obj = AppContext(config_path=config)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the daemon: SFTP server, sweeper and pipeline workers."""
    from cli.daemon import serve as run_daemon

    run_daemon(app_context(ctx).settings)


@app.command()
def status(ctx: typer.Context,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts of batches and calls by status."""
    from sqlalchemy import func
    from sqlmodel import select

    from ingestd.models import Batch, Call

    with app_context(ctx).db.session() as session:
        batches = {status: count for status, count in session.exec(
            select(Batch.status, func.count()).group_by(Batch.status)).all()}
        calls = {status: count for status, count in session.exec(
            select(Call.status, func.count()).group_by(Call.status)).all()}
    emit({"batches": batches, "calls": calls}, as_json)


def main() -> None:
    """Console entry point: one line on stderr and a non-zero exit for any ingestd error."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except errors.IngestError as exc:
        print(f"ingestd: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except typer.Abort:
        print("ingestd: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click usage errors and the unexpected: still one line
        _report_click_or_raise(exc)


def _report_click_or_raise(exc: Exception) -> None:
    # Typer carries its own click: its exceptions derive from typer.TyperException.
    if isinstance(exc, typer.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, typer.TyperException) and hasattr(exc, "format_message"):
        message = exc.format_message().strip()
        if "\n" in message:  # `ingestd` or a group with no command: the help is the answer
            print(message, file=sys.stderr)
        else:
            print(f"ingestd: {message}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    raise exc
