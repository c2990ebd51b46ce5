"""Issue 2's walking skeleton, end to end: SFTP drop → batch → import → transcript → checks → score.

Starts the real daemon on free ports in a temp dir, configures it with the real CLI, uploads with
OpenSSH's ``sftp`` (CSV last) and with paramiko (CSV first), and reads the results back with
``--json``.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess

import paramiko
import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

CALLS = ["20260115_JS001_outbound.mp3", "call-JD002-0930.wav", "JD002 callback 1415.webm"]
PIPELINE_TIMEOUT = 300  # three ~50 s stereo calls through offline PocketSphinx on 2 cores
TIME_TOLERANCE = 0.5


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    proc = DaemonProcess(root)
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.stop()


def _manifest(corpus, tmp_path):
    with open(corpus / "csv" / "manifest_clean.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file_name"] in CALLS]
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, {r["file_name"]: r for r in rows}


def _setup_campaign(daemon, slug):
    daemon.cli("campaign", "create", slug.title(), "--slug", slug, "--batch-window", "120")
    daemon.cli("check", "add", "--campaign", slug, "--name", "greeting", "--kind", "phrase",
               "--phrase", "thank you for calling", "--speaker", "agent", "--within", "15")
    daemon.cli("check", "add", "--campaign", slug, "--name", "no_promises", "--kind",
               "forbidden_phrase", "--phrase", "I guarantee", "--phrase",
               "you will definitely make money", "--critical")


def _upload_with_openssh(daemon, tmp_path, slug, files):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    daemon.cli("sftp-user", "add", "ops", "--public-key", f"{key}.pub", "--campaign", slug)
    batch = tmp_path / "batch.txt"
    batch.write_text(f"cd /{slug}\n" + "".join(f'put "{f}"\n' for f in files))
    result = subprocess.run(
        ["sftp", "-b", str(batch), "-i", str(key), "-P", str(daemon.sftp_port),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "ops@127.0.0.1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _paramiko(daemon, username, password):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=daemon.sftp_port, username=username, password=password,
                   look_for_keys=False, allow_agent=False)
    return client


def _wait_for_results(daemon, slug):
    batches = wait_for(lambda: [b for b in daemon.json("batch", "list", "--campaign", slug)
                                if b["status"] not in ("DETECTING", "WAITING_FOR_FILES",
                                                       "WAITING_FOR_CSV", "PROCESSING")],
                       60, f"the batch of {slug} to close")
    calls = wait_for(lambda: (lambda cs: cs if len(cs) == 3 and all(
        c["status"] in ("COMPLETED", "FAILED") for c in cs) else None)(
            daemon.json("call", "list", "--campaign", slug)),
        PIPELINE_TIMEOUT, f"the calls of {slug} to finish")
    return batches, calls


def _assert_results(daemon, corpus, slug, rows):
    batches, calls = _wait_for_results(daemon, slug)
    assert len(batches) == 1, batches
    batch = daemon.json("batch", "show", batches[0]["id"])
    assert batch["status"] == "COMPLETED", batch
    assert batch["csv_file"] == "manifest.csv" and batch["missing"] == []
    audio = [f for f in batch["files"] if f["name"] != "manifest.csv"]
    assert sorted(f["name"] for f in audio) == sorted(CALLS)
    assert all(f["status"] == "COMPLETED" and f["call_id"] for f in audio), audio
    for summary in calls:
        call = daemon.json("call", "show", summary["id"])
        assert call["status"] == "COMPLETED", call
        assert call["source"] == "SFTP"
        row = rows[call["file_name"]]
        for key in ("agent_code", "customer_id", "client_reference", "call_date"):
            assert call["metadata"][key] == row[key]
        assert call["metadata"]["call_type"] == row["call_type"].upper()
        _assert_transcript_matches_truth(call["transcript"], corpus, call["file_name"])
        assert sorted(c["name"] for c in call["checks"]) == ["greeting", "no_promises"]
        assert all(c["result"] in ("PASS", "FAIL") for c in call["checks"])
        assert call["score"] is not None and 0 <= call["score"] <= 100


def _assert_transcript_matches_truth(transcript, corpus, file_name):
    truth = json.loads((corpus / "calls" / (file_name.rsplit(".", 1)[0] + ".truth.json"))
                       .read_text())["utterances"]
    assert {u["speaker"] for u in transcript} == {"agent", "customer"}
    for said in truth:
        assert any(u["speaker"] == said["speaker"]
                   and u["start"] <= said["start"] + TIME_TOLERANCE
                   and u["end"] >= said["end"] - TIME_TOLERANCE for u in transcript), (
            f"{file_name}: no {said['speaker']} utterance covers {said['start']}-{said['end']}")
    for heard in transcript:
        assert any(t["speaker"] == heard["speaker"]
                   and heard["start"] >= t["start"] - TIME_TOLERANCE
                   and heard["start"] <= t["end"] for t in truth), (
            f"{file_name}: {heard['speaker']} speech at {heard['start']} is not in the truth")


def test_openssh_upload_csv_last_ends_in_scored_calls(daemon, corpus, tmp_path):
    manifest, rows = _manifest(corpus, tmp_path)
    _setup_campaign(daemon, "openssh")
    _upload_with_openssh(daemon, tmp_path, "openssh",
                         [corpus / "calls" / f for f in CALLS] + [manifest])
    _assert_results(daemon, corpus, "openssh", rows)


def test_paramiko_upload_csv_first_ends_in_scored_calls(daemon, corpus, tmp_path):
    manifest, rows = _manifest(corpus, tmp_path)
    _setup_campaign(daemon, "paramiko")
    daemon.cli("sftp-user", "add", "robot", "--password-stdin", "--campaign", "paramiko",
               stdin="s3cret-pass\n")
    with _paramiko(daemon, "robot", "s3cret-pass") as client:
        sftp = client.open_sftp()
        sftp.put(str(manifest), "/paramiko/manifest.csv")
        for name in CALLS:
            sftp.put(str(corpus / "calls" / name), f"/paramiko/{name}")
    _assert_results(daemon, corpus, "paramiko", rows)


def test_dropped_upload_leaves_nothing_and_paths_stay_confined(daemon, corpus):
    _setup_campaign(daemon, "jail")
    daemon.cli("sftp-user", "add", "jailed", "--password-stdin", "--campaign", "jail",
               stdin="jail-pass\n")
    client = _paramiko(daemon, "jailed", "jail-pass")
    sftp = client.open_sftp()
    assert sftp.listdir("/") == ["jail"]
    for outside in ("/../../etc/passwd", "/openssh/x.wav", "/x.wav"):
        with pytest.raises(OSError), sftp.open(outside, "wb") as fh:
            fh.write(b"x")
    with pytest.raises(OSError):
        sftp.open("/../../../etc/passwd", "rb").read()
    handle = sftp.open("/jail/dropped.wav", "wb")
    handle.write((corpus / "calls" / "call-JD002-0930.wav").read_bytes()[:200_000])
    handle.flush()
    client.get_transport().sock.close()  # the connection drops before the close
    client.close()
    landing = daemon.root / "var" / "landing" / "jail"
    wait_for(lambda: not list((daemon.root / "var" / "incoming").glob("*")), 10,
             "the dropped upload's temp file to be discarded")
    assert not (landing / "dropped.wav").exists()
    assert daemon.json("batch", "list", "--campaign", "jail") == []


def test_restart_keeps_host_key_and_data(daemon, corpus):
    _setup_campaign(daemon, "restart")
    daemon.cli("sftp-user", "add", "again", "--password-stdin", "--campaign", "restart",
               stdin="again-pass\n")

    def fingerprint():
        transport = paramiko.Transport(("127.0.0.1", daemon.sftp_port))
        try:
            transport.start_client(timeout=10)
            return transport.get_remote_server_key().get_fingerprint()
        finally:
            transport.close()

    before = fingerprint()
    campaigns_before = daemon.json("campaign", "list")
    checks_before = daemon.json("check", "list", "--campaign", "restart")
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
    daemon.start()
    assert fingerprint() == before
    assert daemon.json("campaign", "list") == campaigns_before
    assert daemon.json("check", "list", "--campaign", "restart") == checks_before
    with _paramiko(daemon, "again", "again-pass") as client:  # users survived too
        assert client.open_sftp().listdir("/") == ["restart"]


def test_unsupported_pull_sources_refuse_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTD_PULL__SOURCES",
                       json.dumps([{"host": "h", "username": "u", "campaign": "c"}]))
    result = DaemonProcess(tmp_path).cli("serve", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ingestd: [pull] sources are not supported by this release yet: "
        "remove them from the configuration")
