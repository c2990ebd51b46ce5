"""Fixtures shared by every tier: settings in a temp dir, a migrated database, a manual clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ingestd.clock import ManualClock
from ingestd.config import Settings, load_settings
from ingestd.db import Database
from ingestd.models import Campaign

# CI clones the repo with shared/ beside it, as in a developer's checkout.
CORPUS = Path(os.environ.get("INGESTD_TEST_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")


@pytest.fixture(autouse=True)
def _clean_ingestd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's INGESTD_* variables must not change what a test sees."""
    for key in list(os.environ):
        if key.startswith("INGESTD_") and key != "INGESTD_TEST_DATABASE_URL":
            monkeypatch.delenv(key)


@pytest.fixture
def corpus() -> Path:
    if not (CORPUS / "calls").is_dir():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"INGESTD_DATA_DIR": str(tmp_path / "var"),
                                  "INGESTD_SFTP__STABLE_SECONDS": "0"})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("INGESTD_TEST_DATABASE_URL")
    if not url:
        pytest.skip("INGESTD_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    return url


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database, emptied before the test."""
    database = Database(pg_url)
    reset_postgres(database)
    database.migrate()
    yield database
    database.dispose()


def reset_postgres(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """The test runs once on SQLite and once on PostgreSQL (skipped without one)."""
    if request.param == "sqlite":
        return request.getfixturevalue("db")
    return request.getfixturevalue("pg_db")


def make_campaign(db: Database, clock: ManualClock, slug: str = "acme", **fields) -> Campaign:
    campaign = Campaign(name=fields.pop("name", slug.title()), slug=slug,
                        created_at=clock.now(), **fields)
    with db.session() as session:
        session.add(campaign)
    return campaign
