"""``ingestd upload``: a bulk job of 200 corpus calls through the real HTTP API.

The corpus set is generated once per session (``make_corpus.py --bulk 200 --bulk-only``, needs
espeak-ng and sox) unless ``INGESTD_TEST_BULKSET`` points at an existing ``bulk/`` folder.
Campaigns use ``auto_process = false`` so the pipeline stays out of the way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORPUS, make_campaign
from fakes.http_server import LiveApi, tweak
from sqlmodel import select

from cli.bulk import PlannedFile, Uploader, plan_upload
from ingestd import api_keys
from ingestd.models import ApiKey, BulkJob, Call

# Registers the command when cli/app.py does not (yet), then runs the real entry point. Ctrl-C
# (SIGINT) reaches it as at a terminal even when the test run itself was started in the
# background by a shell without job control, which starts its children with SIGINT ignored.
RUNNER = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
          "from cli import app as a, upload as u\n"
          "if not any(c.name == 'upload' for c in a.app.registered_commands):\n"
          "    a.app.command('upload')(u.upload)\n"
          "a.main()\n")


@pytest.fixture(scope="session")
def bulkset(tmp_path_factory) -> Path:
    given = os.environ.get("INGESTD_TEST_BULKSET")
    if given and (Path(given) / "manifest.csv").is_file():
        return Path(given)
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed to generate the bulk corpus")
    out = tmp_path_factory.mktemp("bulkset")
    subprocess.run([sys.executable, str(CORPUS / "make_corpus.py"), str(out), "--bulk", "200",
                    "--bulk-only"], check=True, capture_output=True, timeout=900)
    return out / "bulk"


def _serve(settings, db, clock):
    settings = tweak(settings, http={"rate_limit_per_minute": 100_000})
    make_campaign(db, clock, "bulk", auto_process=False)
    return LiveApi(settings, db, clock)


@pytest.fixture
def server(settings, db, clock):
    with _serve(settings, db, clock) as live:
        yield live, db


@pytest.fixture
def server_any_db(settings, any_db, clock):
    """On SQLite and on PostgreSQL: the CLI process and the server share the database."""
    with _serve(settings, any_db, clock) as live:
        yield live, any_db


def start_upload(tmp_path, live, db, *args):
    config = tmp_path / "ingestd.toml"
    config.write_text(f'data_dir = "{live.settings.data_dir}"\n[database]\nurl = "{db.url}"\n'
                      f'[http]\nport = {live.server.port}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
    return subprocess.Popen([sys.executable, "-c", RUNNER, "--config", str(config), "upload",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_calls(db):
    with db.session() as session:
        return session.exec(select(Call)).all()


def test_two_hundred_files_are_imported_once_with_their_rows(tmp_path, server, bulkset):
    live, db = server
    proc = start_upload(tmp_path, live, db, str(bulkset), "--campaign", "bulk", "--csv",
                        str(bulkset / "manifest.csv"), "--parallel", "4", "--json")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "COMPLETED" and summary["files"] == 200
    assert (summary["imported"], summary["duplicates"], summary["failed"]) == (200, 0, [])
    assert summary["missing"] == [] and summary["not_started"] == 0
    assert [s["name"] for s in summary["skipped"]] == [str(bulkset / "truth.jsonl")]
    assert "upload: 200/200 files" in err  # progress, with bytes and speed
    assert " MB/s" in err
    calls = all_calls(db)
    assert len(calls) == 200 and {c.source for c in calls} == {"BULK"}
    assert {c.status for c in calls} == {"PENDING"}
    by_name = {c.file_name: c for c in calls}
    assert len(by_name) == 200
    for name, call in list(by_name.items())[:20]:
        assert call.sha256 == sha256(bulkset / name)
        assert call.meta["client_reference"].startswith("BULK-PUBLIC-")
    with db.session() as session:
        job = session.get(BulkJob, summary["job_id"])
        assert (job.status, job.done_files, job.total_files) == ("COMPLETED", 200, 200)
        assert all(k.revoked_at is not None for k in session.exec(select(ApiKey)))
    # Uploading a file of the job again imports nothing twice.
    again = start_upload(tmp_path, live, db, str(bulkset / calls[0].file_name), "--campaign",
                         "bulk", "--json")
    out, err = again.communicate(timeout=600)
    assert json.loads(out)["duplicates"] == 1 and len(all_calls(db)) == 200


def test_ctrl_c_half_way_cancels_the_rest_and_leaves_no_partial_call(tmp_path, server_any_db,
                                                                     bulkset):
    live, db = server_any_db
    proc = start_upload(tmp_path, live, db, str(bulkset), "--campaign", "bulk", "--csv",
                        str(bulkset / "manifest.csv"), "--parallel", "2", "--json")
    deadline = time.monotonic() + 300
    while len(all_calls(db)) < 60:
        assert proc.poll() is None and time.monotonic() < deadline, "upload too slow or ended"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "CANCELLED" and "cancelling" in err
    calls = all_calls(db)
    assert 60 <= len(calls) < 200
    assert summary["imported"] == len(calls)
    assert summary["not_started"] == 200 - len(calls)
    for call in calls:  # every call that exists holds its whole file
        assert call.sha256 == sha256(bulkset / call.file_name)
    assert list(live.settings.incoming_path.glob("http-*")) == []
    with db.session() as session:
        job = session.get(BulkJob, summary["job_id"])
        assert job.status == "CANCELLED" and job.done_files == len(calls)


def test_rate_limited_uploads_wait_for_retry_after(settings, db, clock, corpus):
    """The server's clock is moved by the client's waits: 429s cost no real time here."""
    campaign = make_campaign(db, clock, "acme", auto_process=False)
    key = api_keys.create(db, "acme", clock)
    waits: list[float] = []

    def wait_on_server_clock(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    names = sorted(p for p in (corpus / "calls").iterdir() if p.suffix != ".json")
    with LiveApi(tweak(settings, http={"rate_limit_per_minute": 3}), db, clock) as live:
        uploader = Uploader(live.url, key, sleep=wait_on_server_clock)
        try:
            outcomes = [uploader.upload(PlannedFile(p, p.name, p.stat().st_size, {}),
                                        lambda n: None) for p in names]
        finally:
            uploader.close()
    assert [o.result for o in outcomes] == ["imported"] * len(names)
    assert waits and all(w == 60 for w in waits)
    assert len(all_calls(db)) == len(names) and campaign.id


def test_plan_matches_files_to_csv_rows(tmp_path):
    for name in ("a_JS001.wav", "b.mp3", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    csv = tmp_path / "m.csv"
    csv.write_text("file_name,call_type,client_reference\na_JS001.wav,inbound,R1\n"
                   "gone.wav,OUTBOUND,R2\na_JS001.wav,OUTBOUND,R3\n")
    plan = plan_upload([tmp_path], csv, csv_required=False)
    assert [(f.name, f.metadata) for f in plan.files] == [
        ("a_JS001.wav", {"call_type": "INBOUND", "client_reference": "R1"}), ("b.mp3", {})]
    assert plan.missing == ["gone.wav"]
    assert [s["reason"] for s in plan.skipped] == ["not an audio file (.txt)"]
    required = plan_upload([tmp_path], csv, csv_required=True)
    assert [f.name for f in required.files] == ["a_JS001.wav"]
    assert "not named in the CSV" in required.skipped[0]["reason"]
