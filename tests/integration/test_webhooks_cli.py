"""The CLI of issue 4: ``webhook add|list|deliveries`` and ``call retry|process|reprocess``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli import calls, webhooks
from cli.app import root
from ingestd.config import load_settings
from ingestd.db import Database
from ingestd.models import Call, Campaign, WebhookDelivery

# The commands as the lead registers them in cli/app.py (names: "webhook", "call").
app = typer.Typer(pretty_exceptions_enable=False)
app.callback()(root)
app.add_typer(webhooks.app, name="webhook")
app.add_typer(calls.app, name="call")
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    return path


@pytest.fixture
def database(config: Path) -> Database:
    db = Database(load_settings(config).database_url)
    db.migrate()
    with db.session() as session:
        session.add(Campaign(id="cmp_1", name="Acme", slug="acme", created_at=NOW,
                             auto_process=False))
    return db


def invoke(config: Path, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output
    assert result.exit_code != 0
    return str(result.exception)


def test_webhook_add_list_and_deliveries(config: Path, database: Database) -> None:
    added = json.loads(invoke(config, "webhook", "add", "--campaign", "acme", "--url",
                              "https://hooks.example.com/x", "--event", "call.failed",
                              "--secret", "abc", "--json"))
    assert (added["url"], added["events"], added["secret"]) == (
        "https://hooks.example.com/x", ["call.failed"], "abc")
    plain = invoke(config, "webhook", "add", "--campaign", "acme", "--url", "http://h/y")
    secret = plain.strip().splitlines()[-1]
    assert len(secret) == 64  # a random 256-bit secret, printed once

    listed = json.loads(invoke(config, "webhook", "list", "--campaign", "acme", "--json"))
    assert [h["url"] for h in listed] == ["https://hooks.example.com/x", "http://h/y"]
    assert listed[1]["events"] == ["call.completed", "call.failed", "batch.completed"]
    assert all("secret" not in h for h in listed)

    with database.session() as session:
        session.add(WebhookDelivery(webhook_id=added["id"], event="call.failed",
                                    status="FAILED", attempts=8, last_status_code=500,
                                    last_error="HTTP 500: boom", created_at=NOW))
    log = json.loads(invoke(config, "webhook", "deliveries", "--webhook", added["id"],
                            "--json"))
    assert [(d["status"], d["attempts"], d["last_error"]) for d in log] == [
        ("FAILED", 8, "HTTP 500: boom")]
    assert "HTTP 500: boom" in invoke(config, "webhook", "deliveries")
    assert "not an http(s) URL" in invoke(config, "webhook", "add", "--campaign", "acme",
                                          "--url", "ftp://x", ok=False)


def test_call_process_retry_and_reprocess(config: Path, database: Database) -> None:
    with database.session() as session:
        session.add(Call(id="call_wait", campaign_id="cmp_1", source="SFTP", file_name="a.mp3",
                         created_at=NOW, updated_at=NOW))
        session.add(Call(id="call_bad", campaign_id="cmp_1", source="SFTP", file_name="b.mp3",
                         status="FAILED", stage="transcription", error="HTTP 503",
                         attempts=3, queued=True, created_at=NOW, updated_at=NOW))
        session.add(Call(id="call_done", campaign_id="cmp_1", source="SFTP", file_name="c.mp3",
                         status="COMPLETED", transcript_version=1, analysis_version=1,
                         queued=True, created_at=NOW, updated_at=NOW))

    assert json.loads(invoke(config, "call", "process", "--campaign", "acme", "--json")) == {
        "campaign": "acme", "queued": 1}
    retried = json.loads(invoke(config, "call", "retry", "call_bad", "--json"))
    assert (retried["status"], retried["error"], retried["stage"]) == (
        "PENDING", None, "transcription")
    assert "queued for a new analysis" in invoke(config, "call", "reprocess", "call_done",
                                                 "--analysis")
    assert "already queued" in invoke(config, "call", "reprocess", "call_done", ok=False)
    assert "only a FAILED call" in invoke(config, "call", "retry", "call_wait", ok=False)
    with database.session() as session:
        done = session.get(Call, "call_done")
        assert (done.status, done.queued, done.stage) == ("PENDING", True, "analysis")
        assert session.get(Call, "call_wait").queued is True
