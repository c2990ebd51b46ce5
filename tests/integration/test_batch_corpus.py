"""Every case of the corpus README through the batch path, checked against ``expected.json``.

Each CSV goes into its own campaign with the audio it names (from ``calls/`` or ``bad/``), the
way the README says to push it; the bad files go into one CSV-less folder. Real intake (ffmpeg),
SQLite, a manual clock past the batch window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CORPUS, make_campaign
from sqlmodel import select
from test_batch_sweeper import Rig

from ingestd.clock import ManualClock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.landing import LandingRecorder
from ingestd.metadata import STANDARD_FIELDS
from ingestd.models import Agent, Call

WINDOW = 60


def _expected() -> dict:
    path = CORPUS / "expected.json"
    return json.loads(path.read_text()) if path.is_file() else {"csv": [], "bad": []}


EXPECTED = _expected()


@pytest.fixture
def rig(db: Database, clock: ManualClock, settings: Settings, corpus: Path) -> Rig:
    recorder = LandingRecorder(db, clock, settings.sftp.stable_seconds,
                               settings.sftp.ignore_patterns)
    with db.session() as session:
        for code, name in EXPECTED.get("agents", {}).items():
            session.add(Agent(code=code, name=name, created_at=clock.now()))
    return Rig(db, clock, settings, corpus, recorder)


def _source(corpus: Path, name: str) -> Path | None:
    for folder in ("calls", "bad"):
        if (corpus / folder / name).is_file():
            return corpus / folder / name
    return None


def _push(rig: Rig, case: dict, slug: str) -> None:
    rig.land(rig.corpus / case["path"], Path(case["path"]).name, scope=slug)
    for name in case["files_named"]:
        source = _source(rig.corpus, name)
        if source is not None:
            rig.land(source, name, scope=slug)


def _expected_meta(row: dict) -> dict:
    meta = {k: row[k] for k in STANDARD_FIELDS if row.get(k) is not None}
    return {**meta, **row.get("custom", {})}


def _settle(rig: Rig) -> None:
    rig.tick()
    rig.clock.advance(WINDOW + 1)
    rig.tick()


@pytest.mark.parametrize("case", EXPECTED["csv"], ids=lambda c: c.get("kind", "?"))
def test_corpus_csv_manifest_is_handled_as_the_readme_says(rig: Rig, clock: ManualClock,
                                                          case: dict) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW)
    _push(rig, case, "acme")
    _settle(rig)
    files = rig.files()
    csv_name = Path(case["path"]).name
    by_csv = {b.csv_file: b for b in rig.batches()}
    if not case["rows"]:
        batch = by_csv[csv_name]
        assert batch.status == "FAILED" and batch.reason, (batch.status, batch.reason)
        assert files[csv_name].status == "FAILED"
        assert all(f.batch_id != batch.id for n, f in files.items() if n != csv_name)
        return
    batch = by_csv[csv_name]
    calls = rig.calls()
    for row in case["rows"]:
        name = row["file_name"]
        if name in case.get("missing", []):
            continue
        if name in case.get("failed", []):
            assert files[name].status == "FAILED" and files[name].reason
            continue
        assert files[name].status == "COMPLETED", (name, files[name].reason)
        assert files[name].batch_id == batch.id
        assert calls[files[name].call_id].meta == _expected_meta(row), name
    assert sorted(batch.missing) == sorted(case.get("missing", []))
    problems = case.get("missing") or case.get("failed")
    assert batch.status == ("INCOMPLETE" if problems else "COMPLETED"), batch.reason
    assert len(calls) == len(case["rows"]) - len(case.get("missing", [])) - len(
        case.get("failed", []))
    for warning in case.get("warnings", []):
        _assert_warned(files, case["files_named"], warning)


def _assert_warned(files: dict, named: list[str], expected: str) -> None:
    """The file the expected warning is about carries a warning naming the same problem."""
    name = next(n for n in named if n in expected)
    words = [w.strip("'") for w in expected.split() if w.startswith("'") or w == "duplicate"]
    found = files[name].warnings
    assert any(all(word in text for word in words) for text in found), (expected, found)


def test_corpus_csv_latin1_is_decoded_with_a_warning_and_accents_intact(
        rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW)
    case = next(c for c in EXPECTED["csv"] if c["kind"] == "latin1")
    _push(rig, case, "acme")
    _settle(rig)
    files = rig.files()
    assert any("not valid UTF-8" in w for w in files["manifest_latin1.csv"].warnings)
    ogg = rig.calls()[files["réclamation 01.ogg"].call_id]
    assert (ogg.meta["agent_name"], ogg.agent_code) == ("Zoë Lefèvre", "ZL005")


def test_corpus_bad_files_in_one_csvless_folder_end_incomplete_with_reasons(
        rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW)
    for entry in EXPECTED["bad"]:
        source = rig.corpus / entry["path"]
        rig.land(source, source.name)
    _settle(rig)
    files = rig.files()
    outcome = {"accept": "COMPLETED", "fail": "FAILED", "skip": "SKIPPED"}
    for entry in EXPECTED["bad"]:
        row = files[Path(entry["path"]).name]
        assert row.status == outcome[entry["expect"]], (row.name, row.status, row.reason)
        assert (row.reason is None) == (entry["expect"] == "accept")
    assert files["bad_unsupported.txt"].reason == "unsupported file type .txt"
    assert files["bad_unsupported.exe"].reason == "unsupported file type .exe"
    assert files["bad_zero_bytes.mp3"].reason == "empty file (0 bytes)"
    assert files["bad_too_short_4s.wav"].reason == "too short: 4.0 s < 10 s"
    assert files["bad_truncated_3kb.mp3"].reason == "too short: 0.3 s < 10 s"
    assert "corrupt" in (files["bad_corrupt_header.wav"].reason or "") or "sample rate" in (
        files["bad_corrupt_header.wav"].reason or "")
    batch = rig.batches()[0]
    assert (batch.status, len(rig.batches())) == ("INCOMPLETE", 1)
    assert batch.reason == "1 of 8 files imported; 5 failed, 2 skipped"


def test_corpus_calls_without_csv_link_agents_from_file_names(rig: Rig,
                                                             clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW)
    for entry in EXPECTED["calls"]:
        source = rig.corpus / entry["path"]
        rig.land(source, source.name)
    rig.tick()
    assert rig.batches()[0].status == "DETECTING"
    rig.clock.advance(WINDOW + 1)
    rig.tick()
    with rig.db.session() as session:
        linked = {c.file_name: c.agent_code for c in session.exec(select(Call))}
    assert linked == {Path(e["path"]).name: e["agent_code_in_file_name"]
                      for e in EXPECTED["calls"]}
    assert rig.batches()[0].status == "COMPLETED"


def test_corpus_required_csv_fails_then_a_later_clean_csv_binds_the_kept_files(
        rig: Rig, clock: ManualClock) -> None:
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW, csv_mode="required")
    for entry in EXPECTED["calls"]:
        source = rig.corpus / entry["path"]
        rig.land(source, source.name)
    rig.tick()
    assert rig.batches()[0].status == "WAITING_FOR_CSV"
    clock.advance(WINDOW + 1)
    rig.tick()
    failed = rig.batches()[0]
    assert (failed.status, failed.reason) == (
        "FAILED", "CSV required but none arrived within the batch window")
    rig.land(rig.corpus / "csv" / "manifest_clean.csv", "manifest_clean.csv")
    rig.tick()
    later = rig.batches()[1]
    assert (later.status, later.csv_file) == ("COMPLETED", "manifest_clean.csv")
    assert len(rig.calls()) == 8 and rig.batches()[0].status == "FAILED"
    assert not any(p.is_file() for p in (rig.settings.landing_path / "acme").rglob("*"))
