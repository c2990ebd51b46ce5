"""API keys: shown once, stored as a hash, verified, rotated; and the ``api-key`` commands."""

from __future__ import annotations

import hashlib
import json

import pytest
import typer
from conftest import make_campaign
from sqlmodel import select
from typer.testing import CliRunner

from cli import api_keys as api_key_cli
from cli.context import AppContext
from ingestd import api_keys, errors
from ingestd.models import ApiKey


def test_key_format_and_storage(db, clock):
    campaign = make_campaign(db, clock)
    key = api_keys.create(db, "acme", clock)
    assert key.startswith("tv_") and len(key) == 3 + 43  # 256 bits, URL-safe base64
    with db.session() as session:
        [row] = session.exec(select(ApiKey)).all()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest() and key not in row.key_hash
    assert row.prefix == key[:10] and row.campaign_id == campaign.id
    verified = api_keys.verify(db, key)
    assert verified is not None and verified.campaign_id == campaign.id


@pytest.mark.parametrize("presented", ["", "tv_", "tv_" + "A" * 43, "xx_abc", "tv_" + "a" * 500])
def test_wrong_keys_are_not_verified(db, clock, presented):
    make_campaign(db, clock)
    api_keys.create(db, "acme", clock)
    assert api_keys.verify(db, presented) is None


def test_rotation_revokes_every_old_key_at_once(db, clock):
    make_campaign(db, clock)
    first, second = api_keys.create(db, "acme", clock), api_keys.create(db, "acme", clock)
    assert api_keys.verify(db, first) and api_keys.verify(db, second)
    rotated = api_keys.rotate(db, "acme", clock)
    assert api_keys.verify(db, first) is None and api_keys.verify(db, second) is None
    assert api_keys.verify(db, rotated) is not None


def test_a_jobs_key_can_be_revoked_alone(db, clock):
    campaign = make_campaign(db, clock)
    operator_key = api_keys.create(db, "acme", clock)
    job_key, key_id = api_keys.create_for_campaign_id(db, campaign.id, clock)
    api_keys.revoke(db, key_id, clock)
    assert api_keys.verify(db, job_key) is None and api_keys.verify(db, operator_key)


def test_unknown_campaign(db, clock):
    with pytest.raises(errors.NotFound, match="no campaign with slug 'nope'"):
        api_keys.create(db, "nope", clock)


@pytest.fixture
def run(tmp_path, settings, db, clock):
    make_campaign(db, clock)
    config = tmp_path / "ingestd.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\n')
    root = typer.Typer()
    root.add_typer(api_key_cli.app, name="api-key")

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = AppContext(config_path=str(config))

    def invoke(*args):
        result = CliRunner().invoke(root, list(args))
        return result

    return invoke


def test_cli_prints_the_key_as_the_last_line(run, db):
    result = run("api-key", "create", "--campaign", "acme")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert api_keys.verify(db, key) is not None


def test_cli_json_and_rotate(run, db):
    created = json.loads(run("api-key", "create", "--campaign", "acme", "--json").stdout)
    rotated = json.loads(run("api-key", "rotate", "--campaign", "acme", "--json").stdout)
    assert set(created) == {"key"} and set(rotated) == {"key"}
    assert api_keys.verify(db, created["key"]) is None
    assert api_keys.verify(db, rotated["key"]) is not None


def test_cli_unknown_campaign_fails(run):
    result = run("api-key", "create", "--campaign", "nope")
    assert result.exit_code != 0 and isinstance(result.exception, errors.NotFound)
