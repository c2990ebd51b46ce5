"""The database: engine, sessions, migrations and row claiming.

This is the one module that knows SQLite from PostgreSQL. Work is handed between the SFTP
server, the batch engine and the pipeline through rows, so several processes (or nodes sharing
one PostgreSQL) may look at the same rows: claiming is done in a single statement that is safe
on both — ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id`` on
PostgreSQL; on SQLite the clause is dropped and the single-writer lock makes the statement atomic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from ingestd.models import Call, CallStatus

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Owns the engine; hands out sessions through :meth:`session`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends cleanly and rolls back otherwise."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        with self.engine.begin() as connection:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()

    def claim_calls(self, worker_id: str, now: datetime, lease_seconds: float,
                    limit: int = 1) -> list[str]:
        """Claim up to ``limit`` calls for the pipeline and return their ids.

        Claimable: queued calls not yet finished whose lease is unset or ran out (a worker
        that died leaves its lease to expire) and whose retry time has come. The claim sets
        the lease; the worker renews it or finishes (and clears it) before it ends.
        """
        claimable = (
            select(Call.id)
            .where(
                Call.queued,
                Call.status.in_([CallStatus.PENDING.value, CallStatus.TRANSCRIBING.value,
                                 CallStatus.ANALYZING.value]),
                or_(Call.lease_until.is_(None), Call.lease_until < now),
                or_(Call.next_attempt_at.is_(None), Call.next_attempt_at <= now),
            )
            .order_by(Call.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Call)
            .where(Call.id.in_(claimable.scalar_subquery()))
            .values(claimed_by=worker_id, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(Call.id)
            .execution_options(synchronize_session=False)
        )
        with self.session() as session:
            return list(session.execute(statement).scalars())


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    _ensure_sqlite_parent(url)
    engine = create_engine(url, connect_args={"check_same_thread": False,
                                              "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _ensure_sqlite_parent(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
