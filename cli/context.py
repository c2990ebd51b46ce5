"""What every command needs: the settings (from ``--config``), the database and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import typer

from ingestd.clock import Clock, SystemClock
from ingestd.config import Settings, load_settings
from ingestd.db import Database


@dataclass
class AppContext:
    config_path: str | None = None
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def db(self) -> Database:
        """The database, migrated to the newest schema (a no-op when it already is)."""
        database = Database(self.settings.database_url)
        database.migrate()
        return database


def app_context(ctx: typer.Context) -> AppContext:
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
