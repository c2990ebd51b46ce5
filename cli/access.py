"""``ingestd sftp-user …`` and ``ingestd agent …``: who may upload, and who the agents are."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import col, select

from cli.campaigns import JsonOpt, find_campaign
from cli.context import app_context
from cli.output import emit
from ingestd import errors
from ingestd.clock import isoformat
from ingestd.models import Agent, SftpUser
from ingestd.views import sftp_user_view
from sftp_server.auth import check_public_key, hash_password

sftp_app = typer.Typer(help="Manage SFTP users.", no_args_is_help=True)
agent_app = typer.Typer(help="Manage agents (calls link to them by code).", no_args_is_help=True)


@sftp_app.command("add")
def add_user(ctx: typer.Context, name: str,
             password_stdin: Annotated[bool, typer.Option(
                 "--password-stdin", help="Read the password from standard input.")] = False,
             public_key: Annotated[list[Path] | None, typer.Option(
                 "--public-key", help="An OpenSSH public key file (repeatable).")] = None,
             campaign: Annotated[list[str] | None, typer.Option(
                 "--campaign", help="A slug this user may write to (repeatable; none = all).")
             ] = None) -> None:
    """Add an SFTP user with a password and/or public keys."""
    app_ctx = app_context(ctx)
    password = _read_password() if password_stdin else None
    keys = [_read_public_key(p) for p in public_key or []]
    if password is None and not keys:
        raise errors.IngestError("give --password-stdin and/or --public-key: "
                                 "a user with neither could never log in")
    with app_ctx.db.session() as session:
        if session.get(SftpUser, name):
            raise errors.Conflict(f"SFTP user {name!r} already exists")
        for slug in campaign or []:
            find_campaign(session, slug)
        session.add(SftpUser(username=name,
                             password_hash=hash_password(password) if password else None,
                             public_keys=keys, campaigns=list(campaign or []),
                             created_at=app_ctx.clock.now()))
    typer.echo(f"SFTP user {name} added")


@sftp_app.command("list")
def list_users(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List SFTP users (never their secrets)."""
    with app_context(ctx).db.session() as session:
        users = session.exec(select(SftpUser).order_by(col(SftpUser.username))).all()
        emit([sftp_user_view(u) for u in users], as_json,
             ("username", "password", "public_keys", "campaigns"))


@sftp_app.command("remove")
def remove_user(ctx: typer.Context, name: str) -> None:
    """Remove an SFTP user; sessions it opens from now on are refused."""
    with app_context(ctx).db.session() as session:
        user = session.get(SftpUser, name)
        if user is None:
            raise errors.NotFound(f"no SFTP user {name!r}")
        session.delete(user)
    typer.echo(f"SFTP user {name} removed")


@agent_app.command("add")
def add_agent(ctx: typer.Context, code: str,
              name: Annotated[str, typer.Option("--name", help="Display name.")]) -> None:
    """Register an agent; calls link to it by its code."""
    app_ctx = app_context(ctx)
    with app_ctx.db.session() as session:
        if session.get(Agent, code):
            raise errors.Conflict(f"agent {code!r} already exists")
        session.add(Agent(code=code, name=name, created_at=app_ctx.clock.now()))
    typer.echo(f"agent {code} added")


@agent_app.command("list")
def list_agents(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List agents."""
    with app_context(ctx).db.session() as session:
        agents = session.exec(select(Agent).order_by(col(Agent.code))).all()
        rows = [{"code": a.code, "name": a.name, "created_at": isoformat(a.created_at)}
                for a in agents]
        emit(rows, as_json, ("code", "name"))


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise errors.IngestError("no password on standard input")
    return password


def _read_public_key(path: Path) -> str:
    try:
        return check_public_key(path.read_text())
    except OSError as exc:
        raise errors.IngestError(f"cannot read public key {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise errors.IngestError(f"{path}: {exc}") from exc
