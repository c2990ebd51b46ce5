"""Restart safety of the batch engine: ``kill -9`` of the daemon while a batch is importing.

Three hundred recordings wait in a campaign's landing folder (dropped there by other means);
the daemon detects them, opens a batch, processes it after its window and is killed with
SIGKILL once a few files were imported. Imports commit a group of files at a time, so the batch
is several groups long and its files large enough that the kill lands between two commits.
After a restart every file ends exactly once: each file row ``COMPLETED`` with its own call, no
call twice (a second import of the same bytes would be a ``DUPLICATE`` call), no file lost, no
new row for a file seen before, the landing folder empty.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import wave
from pathlib import Path

import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

FILES = 300  # three import groups (batch.importer.RECORD_GROUP)
WINDOW = 3


def write_noise(path: Path, seed: int, seconds: float = 15.0) -> None:
    """A distinct 8 kHz mono 16-bit PCM WAV per ``seed`` (noise is valid audio)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(random.Random(seed).randbytes(2 * int(8000 * seconds)))


def query(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def test_kill_9_while_a_batch_imports_then_restart_imports_every_file_exactly_once(
        tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, pipeline__workers=0, sweeper__interval_seconds=0.5)
    db_path = tmp_path / "var" / "ingestd.db"
    daemon.cli("campaign", "create", "Acme", "--slug", "acme", "--batch-window", str(WINDOW))
    folder = tmp_path / "var" / "landing" / "acme" / "2026-01-15"
    folder.mkdir(parents=True)
    for seed in range(FILES):
        write_noise(folder / f"call_{seed:03}.wav", seed)
    daemon.start()
    try:
        wait_for(lambda: query(db_path, "SELECT count(*) FROM files WHERE status = 'COMPLETED'")
                 [0][0] >= 3, 120, "the batch to start importing", every=0.02)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        done = query(db_path, "SELECT count(*) FROM files WHERE status = 'COMPLETED'")[0][0]
        assert done < FILES, "the kill came too late to interrupt the import"
        daemon.start()
        wait_for(lambda: query(db_path, "SELECT status FROM batches") == [("COMPLETED",)], 180,
                 "the batch to complete after the restart")
    finally:
        if daemon.proc is not None:
            daemon.stop()
    files = query(db_path, "SELECT name, status, call_id FROM files")
    assert len(files) == FILES
    assert {status for _, status, _ in files} == {"COMPLETED"}
    calls = query(db_path, "SELECT id, status, sha256 FROM calls")
    assert len(calls) == FILES and {status for _, status, _ in calls} == {"PENDING"}
    assert len({sha for _, _, sha in calls}) == FILES
    assert sorted(call_id for _, _, call_id in files) == sorted(cid for cid, _, _ in calls)
    assert list(folder.iterdir()) == []
    shown = daemon.json("batch", "list")
    assert [(b["status"], b["scope"]) for b in shown] == [("COMPLETED", "acme/2026-01-15")]
