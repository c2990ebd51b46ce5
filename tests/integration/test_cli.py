"""The ops CLI: SPEC §6 names, JSON shapes, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

CAMPAIGN_FIELDS = {"id", "name", "slug", "csv_mode", "batch_window", "auto_process", "archived",
                   "transcriber", "analyzer", "flag_threshold"}


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    return path


@pytest.fixture
def run(config):
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None):
        result = runner.invoke(app, ["--config", str(config), *args], input=stdin)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_campaign_create_show_list_update_json(run):
    created = json.loads(run("campaign", "create", "Acme Sales", "--slug", "acme-sales",
                             "--csv", "required", "--batch-window", "30", "--no-auto-process",
                             "--flag-threshold", "80", "--json"))
    assert set(created) >= CAMPAIGN_FIELDS
    assert created["id"].startswith("cmp_")
    assert (created["csv_mode"], created["batch_window"], created["auto_process"],
            created["flag_threshold"]) == ("required", 30, False, 80)
    assert (created["transcriber"], created["analyzer"]) == ("pocketsphinx", "rules")
    shown = json.loads(run("campaign", "show", "acme-sales", "--json"))
    listed = json.loads(run("campaign", "list", "--json"))
    assert shown == created and listed == [created]
    updated = json.loads(run("campaign", "update", "acme-sales", "--csv", "optional", "--json"))
    assert updated["csv_mode"] == "optional" and updated["batch_window"] == 30
    run("campaign", "archive", "acme-sales")
    assert json.loads(run("campaign", "show", "acme-sales", "--json"))["archived"] is True


def test_sftp_users_checks_and_agents(run, tmp_path):
    run("campaign", "create", "A", "--slug", "a")
    run("sftp-user", "add", "alice", "--password-stdin", "--campaign", "a", stdin="pw-1\n")
    users = json.loads(run("sftp-user", "list", "--json"))
    assert users[0]["username"] == "alice" and users[0]["campaigns"] == ["a"]
    assert "pw-1" not in json.dumps(users)
    run("check", "add", "--campaign", "a", "--name", "greeting", "--kind", "phrase",
        "--phrase", "thank you for calling", "--speaker", "agent", "--within", "15")
    checks = json.loads(run("check", "list", "--campaign", "a", "--json"))
    assert checks[0]["phrases"] == ["thank you for calling"] and checks[0]["within"] == 15
    run("agent", "add", "JS001", "--name", "James Smith")
    assert json.loads(run("agent", "list", "--json"))[0]["code"] == "JS001"
    run("sftp-user", "remove", "alice")
    assert json.loads(run("sftp-user", "list", "--json")) == []


def test_empty_lists_are_json_arrays(run):
    for command in (("batch", "list"), ("call", "list"), ("campaign", "list")):
        assert json.loads(run(*command, "--json")) == []


@pytest.mark.parametrize("args, message", [
    (("campaign", "show", "nope"), "no campaign with slug 'nope'"),
    (("campaign", "create", "X", "--slug", "Bad Slug"), "invalid slug"),
    (("check", "add", "--campaign", "nope", "--name", "n", "--kind", "regex"),
     "needs --pattern"),
    (("sftp-user", "add", "bob"), "--password-stdin and/or --public-key"),
    (("batch", "show", "bat_missing"), "no batch 'bat_missing'"),
])
def test_errors_are_one_line_on_stderr(config, args, message):
    result = subprocess.run([sys.executable, "-m", "cli", "--config", str(config), *args],
                            capture_output=True, text=True, input="", timeout=60)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_status_counts_batches_and_calls(run):
    assert json.loads(run("status", "--json")) == {"batches": {}, "calls": {}}


def test_a_command_exit_code_reaches_the_shell(config):
    result = subprocess.run([sys.executable, "-m", "cli", "--config", str(config), "batch",
                             "list", "--status", "NOPE"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "NOPE" in result.stderr
