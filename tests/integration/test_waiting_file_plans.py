"""Recording, routing and import passes stay quick while an open batch holds many waiting files.

Every landed file waits as ``DETECTED`` (or ``MATCHED``) until its batch is imported, so a long
window gathers thousands of rows of one status. The statements that run for every landed group
and every pass must find their files through the path or the batch, not read all files of that
status: SQLite's plan (``EXPLAIN QUERY PLAN``) of each is checked, on real rows.
"""

from __future__ import annotations

from conftest import make_campaign
from sqlalchemy import event

from batch.lifecycle import Lifecycle
from batch.routing import Router
from ingestd.landing import LandingChange, LandingRecorder

WAITING = 300


def test_passes_find_waiting_files_by_path_and_batch_not_by_status(db, clock, settings):
    make_campaign(db, clock, "acme", batch_window=3600)
    make_campaign(db, clock, "beta", batch_window=60)
    recorder = LandingRecorder(db, clock, 0.0, settings.sftp.ignore_patterns)
    router = Router(db, clock, settings.landing_path)
    lifecycle = Lifecycle(db, clock)
    recorder.apply([LandingChange("landed", f"beta/b-{i}.wav", 1, 1) for i in range(2)])
    router.route_ready()
    clock.advance(61)
    lifecycle.expire_deadlines()  # beta's batch is PROCESSING, its files wait for import
    recorder.apply([LandingChange("landed", f"acme/old-{i}.wav", 1, 1) for i in range(WAITING)])
    router.route_ready()  # one open CSV-less batch of WAITING files, all DETECTED

    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") and " files" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        recorder.apply([LandingChange("landed", f"acme/new-{i}.wav", 1, 1) for i in range(3)])
        router.route_ready()
        lifecycle.next_due()
        assert len(lifecycle.importable()) == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)

    assert len(statements) >= 5  # the recorder's read, ready reads, next_due's, importable
    with db.engine.connect() as connection:
        for statement, parameters in statements:
            plan = [row[-1] for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)]
            status_only = [step for step in plan
                           if step.startswith("SEARCH files") and "(status=?)" in step]
            assert not status_only, f"{' '.join(statement.split())[:120]}: {plan}"
