"""The HTTP API inside the real daemon: key from the CLI, upload, read back, bulk job."""

from __future__ import annotations

import json
import tomllib

import httpx
import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path):
    proc = DaemonProcess(tmp_path)
    proc.start()
    wait_for(lambda: any("HTTP listening" in line for line in proc.output), 30,
             "the HTTP API to listen")
    yield proc
    proc.stop()


def http_url(daemon: DaemonProcess) -> str:
    port = tomllib.loads(daemon.config.read_text())["http"]["port"]
    return f"http://127.0.0.1:{port}"


def test_upload_with_a_cli_key_then_read_it_back(daemon, corpus):
    daemon.cli("campaign", "create", "Acme", "--slug", "acme", "--no-auto-process")
    key = json.loads(daemon.cli("api-key", "create", "--campaign", "acme", "--json"))["key"]
    url = http_url(daemon)
    assert httpx.get(f"{url}/healthz").json()["data"]["status"] == "ok"
    path = corpus / "calls" / "20260115_JS001_outbound.mp3"
    response = httpx.post(f"{url}/api/v1/calls/upload", headers={"X-API-Key": key},
                          files={"file": (path.name, path.read_bytes())},
                          data={"client_reference": "E2E-1"}, timeout=60)
    assert response.status_code == 201, response.text
    call_id = response.json()["data"]["call_id"]
    shown = daemon.json("call", "show", call_id)
    assert shown["source"] == "API" and shown["metadata"] == {"client_reference": "E2E-1"}
    read = httpx.get(f"{url}/api/v1/calls/{call_id}", headers={"X-API-Key": key}).json()
    assert read["data"]["id"] == call_id
    rotated = json.loads(daemon.cli("api-key", "rotate", "--campaign", "acme", "--json"))["key"]
    assert httpx.get(f"{url}/api/v1/batches", headers={"X-API-Key": key}).status_code == 401
    assert httpx.get(f"{url}/api/v1/batches", headers={"X-API-Key": rotated}).status_code == 200


def test_bulk_upload_command_against_the_daemon(daemon, corpus):
    daemon.cli("campaign", "create", "Bulk", "--slug", "bulk", "--no-auto-process")
    files = [str(p) for p in sorted((corpus / "calls").iterdir()) if p.suffix != ".json"]
    summary = json.loads(daemon.cli("upload", *files, "--campaign", "bulk", "--json"))
    assert summary["status"] == "COMPLETED" and summary["imported"] == len(files)
    calls = daemon.json("call", "list", "--campaign", "bulk")
    assert len(calls) == len(files) and {c["source"] for c in calls} == {"BULK"}
