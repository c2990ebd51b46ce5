"""The migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import ingestd.models  # noqa: F401


def _differences(database) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def test_migrations_match_models(any_db):
    assert _differences(any_db) == []


def test_migrate_twice_is_a_no_op(any_db):
    any_db.migrate()
    assert _differences(any_db) == []
