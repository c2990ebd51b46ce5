"""The growth fixture: a history of N imported files and calls, bulk-inserted in SQL.

``INSERT … SELECT`` over a generated sequence (a recursive CTE on SQLite, ``generate_series``
on PostgreSQL) writes N ``COMPLETED`` calls, their N ``COMPLETED`` files and the N/1000
``COMPLETED`` batches that held them, all in one campaign (the worst case for per-campaign
duplicate checks), with distinct names, references and sha256s. Beside that history, one open
CSV-less batch whose window has not ended holds N/50 files still waiting (``DETECTED``): every
landed file waits so until its batch is imported, and a long window gathers thousands. An index
on the status alone finds nothing quickly among them. PostgreSQL is then ``ANALYZE``d, as
autovacuum would do on a live server after such growth.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ingestd.db import Database
from ingestd.models import Campaign

FILES_PER_BATCH = 1000
WAITING_SHARE = 50  # one waiting file per this many imported ones
SQLITE_STAMP = "'2025-01-01 00:00:00.000000'"
PG_STAMP = "TIMESTAMP '2025-01-01 00:00:00'"


def reset(url: str) -> None:
    """An empty database at ``url``: the SQLite file removed, the PostgreSQL schema dropped
    (the database is created first when it does not exist)."""
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                              {"d": target.database}).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def campaign(db: Database) -> str:
    with db.session() as session:
        row = Campaign(name="growth", slug="growth", auto_process=False,
                       created_at=datetime.now(UTC))
        session.add(row)
        return row.id


def fill(db: Database, campaign_id: str, rows: int) -> None:
    """Insert ``rows`` calls and files (and their batches), and the open batch's waiting files,
    in five statements."""
    sqlite = db.is_sqlite
    batches = max(1, rows // FILES_PER_BATCH)
    with db.engine.begin() as conn:
        for table, count in (("batches", batches), ("calls", rows), ("files", rows),
                             ("open_batch", 1), ("waiting_files", rows // WAITING_SHARE)):
            conn.execute(text(_insert(table, count, sqlite)), {"cmp": campaign_id})
        if not sqlite:
            conn.execute(text("ANALYZE"))


def _insert(part: str, count: int, sqlite: bool) -> str:
    columns, values = zip(*_columns(part, sqlite).items(), strict=True)
    table = {"open_batch": "batches", "waiting_files": "files"}.get(part, part)
    select = f"SELECT {', '.join(values)} FROM "
    if sqlite:
        return (f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
                f"WHERE n < {count}) INSERT INTO {table} ({', '.join(columns)}) {select} seq")
    return (f"INSERT INTO {table} ({', '.join(columns)}) {select} "
            f"generate_series(1, {count}) AS seq(n)")


def _columns(part: str, sqlite: bool) -> dict[str, str]:
    """Column -> SQL expression of ``n`` (1…count) for each part of the fixture."""
    batch_of = f"(n - 1) / {FILES_PER_BATCH}"
    stamp = SQLITE_STAMP if sqlite else PG_STAMP
    far = "'2099-01-01 00:00:00.000000'" if sqlite else "TIMESTAMP '2099-01-01 00:00:00'"
    sha = ("substr('0000000000000000000000000000000000000000000000000000000000000000' || n, -64)"
           if sqlite else "lpad(n::text, 64, '0')")
    empty_list, empty_map = "CAST('[]' AS JSON)", "CAST('{}' AS JSON)"
    common = {"campaign_id": ":cmp", "created_at": stamp, "updated_at": stamp}
    if part == "batches":
        return {**common, "id": "'bat_old_' || (n - 1)", "scope": "'growth/old-' || (n - 1)",
                "status": "'COMPLETED'", "manifest_rows": empty_list, "missing": empty_list,
                "deadline": stamp, "closed_at": stamp}
    if part == "open_batch":
        return {**common, "id": "'bat_open'", "scope": "'growth/open'", "status": "'DETECTING'",
                "manifest_rows": empty_list, "missing": empty_list, "deadline": far}
    if part == "waiting_files":
        return {**common, "id": "'fil_wait_' || n", "scope": "'growth/open'",
                "name": "'wait-' || n || '.wav'",
                "landing_path": "'growth/open/wait-' || n || '.wav'", "kind": "'audio'",
                "source": "'SFTP'", "size": "84044", "mtime_ns": "1", "status": "'DETECTED'",
                "warnings": empty_list, "stable_at": stamp, "batch_id": "'bat_open'"}
    if part == "calls":
        return {**common, "id": "'call_old_' || n", "source": "'SFTP'", "status": "'COMPLETED'",
                "file_name": "'old-' || n || '.wav'", "storage_key": "'old/' || n",
                "size": "84044", "sha256": sha, "duration": "10.5", "channels": "1",
                "sample_rate": "8000", "metadata": empty_map,
                "client_reference": "'REF' || n", "call_date": "'2025-01-01'",
                "queued": "true", "attempts": "1", "score": "100", "flagged": "false",
                "flag_reasons": empty_list, "transcript_version": "1", "analysis_version": "1",
                "completed_at": stamp}
    return {**common, "id": "'fil_old_' || n", "scope": f"'growth/old-' || ({batch_of})",
            "name": "'old-' || n || '.wav'",
            "landing_path": f"'growth/old-' || ({batch_of}) || '/old-' || n || '.wav'",
            "kind": "'audio'", "source": "'SFTP'", "size": "84044", "mtime_ns": "1",
            "sha256": sha, "status": "'COMPLETED'", "warnings": empty_list,
            "stable_at": stamp, "batch_id": f"'bat_old_' || ({batch_of})",
            "call_id": "'call_old_' || n"}
