"""The daemon's file events: a ``[watch]`` drop folder and files copied straight into the landing
tree are detected, batched and imported without waiting for the interval sweep (set to an hour
here, so only the watcher's wakes, and the sweeper's own wake at a batch deadline, can do it)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

CALL = "inbound_RB004_20260119.wav"


def files(db_path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(db_path, timeout=30) as connection:
        rows = connection.execute("SELECT name, source, call_id FROM files").fetchall()
    return {name: (source, call_id) for name, source, call_id in rows}


def test_drop_folder_and_landing_copies_are_imported_without_the_interval_sweep(
        tmp_path: Path, corpus: Path) -> None:
    drop = tmp_path / "drop"
    daemon = DaemonProcess(tmp_path, sweeper__interval_seconds=3600, pipeline__workers=0)
    with daemon.config.open("a") as fh:
        fh.write(f'[[watch.folders]]\npath = "{drop}"\ncampaign = "acme"\n')
    daemon.cli("campaign", "create", "Acme", "--slug", "acme", "--batch-window", "2")
    db_path = tmp_path / "var" / "ingestd.db"
    daemon.start()
    try:
        (drop / "2026-01-19").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / "calls" / CALL, drop / "2026-01-19" / CALL)
        wait_for(lambda: files(db_path).get(CALL, ("", None))[1], 60,
                 "the dropped file to be taken and imported")
        landing = tmp_path / "var" / "landing" / "acme"
        shutil.copyfile(corpus / "calls" / "call-JD002-0930.wav", landing / "copied.wav")
        wait_for(lambda: files(db_path).get("copied.wav", ("", None))[1], 30,
                 "the copied file to be detected and imported")
    finally:
        daemon.stop()
    found = files(db_path)
    assert found[CALL][0] == "WATCH" and found["copied.wav"][0] == "SFTP"
    assert not (drop / "2026-01-19" / CALL).exists()
    batches = daemon.json("batch", "list")
    assert any(b["scope"] == "acme/2026-01-19" for b in batches)
