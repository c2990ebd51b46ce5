"""Benchmark: one 500 MB upload through the HTTP API, beside curl to a plain file sink.

    .venv/bin/python bench/api_upload.py [--mb 500] [--keep]

Starts the real API (``ingestd.api.server.start_http_server``, SQLite, local storage) in a
child process, uploads a 500 MB WAV with ``curl -F file=@…`` and prints

- the server's peak RSS growth during the upload (``VmHWM`` before and after, from /proc);
- the upload's throughput (client's view: bytes / wall time until the 201 arrived), which
  includes the intake's work after the body (probe, sha256 while copying into storage, fsync);
- the same file posted with curl to a stdlib ``http.server`` sink on the same machine that
  reads and discards the body: the floor set by the loopback network and curl itself.

The WAV is 48 kHz stereo 16-bit silence (about 43 minutes), valid for the intake's limits.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVER = """
import asyncio, sys
from ingestd.api.server import start_http_server
from ingestd.clock import SystemClock
from ingestd.config import load_settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.storage.local import LocalStorage

async def main():
    settings = load_settings(environ={"INGESTD_DATA_DIR": sys.argv[1], "INGESTD_HTTP__PORT": "0"})
    db = Database(settings.database_url)
    clock = SystemClock()
    intake = Intake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    server = await start_http_server(settings, db, intake, clock)
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def make_wav(path: Path, size: int) -> None:
    rate, channels, width = 48_000, 2, 2
    data = size - 44
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width,
                            channels * width, width * 8)
              + b"data" + struct.pack("<I", data))
    block = b"\0" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(header)
        left = data
        while left:
            fh.write(block[:min(left, len(block))])
            left -= min(left, len(block))


def prepare(data_dir: Path) -> str:
    """A migrated database with a campaign and a key; returns the key."""
    from ingestd import api_keys
    from ingestd.clock import SystemClock
    from ingestd.config import load_settings
    from ingestd.db import Database
    from ingestd.models import Campaign

    settings = load_settings(environ={"INGESTD_DATA_DIR": str(data_dir)})
    db = Database(settings.database_url)
    db.migrate()
    with db.session() as session:
        session.add(Campaign(name="Bench", slug="bench", auto_process=False,
                             created_at=SystemClock().now()))
    return api_keys.create(db, "bench", SystemClock())


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def curl(url: str, path: Path, headers: list[str]) -> tuple[float, str]:
    argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-F", f"file=@{path}", url]
    for header in headers:
        argv[1:1] = ["-H", header]
    start = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return time.monotonic() - start, out


class Sink(http.server.BaseHTTPRequestHandler):
    """Reads a POST body and throws it away: the cheapest possible upload server."""

    def do_POST(self) -> None:
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    wav = work / "big.wav"
    make_wav(wav, args.mb * 1_000_000)
    key = prepare(work / "var")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(work / "var")],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        subprocess.run(["curl", "-sS", "-o", "/dev/null", f"{url}/healthz"], check=True)
        before = peak_rss_kb(proc.pid)
        seconds, out = curl(f"{url}/api/v1/calls/upload", wav, [f"X-API-Key: {key}"])
        after = peak_rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    body, status = out.rsplit("\n", 1)
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_seconds, _ = curl(f"http://127.0.0.1:{sink.server_address[1]}/", wav, [])
    sink.shutdown()
    size_mb = wav.stat().st_size / 1e6
    print(json.dumps({
        "file_mb": round(size_mb, 1),
        "api_status": int(status), "api_response": json.loads(body).get("data"),
        "api_seconds": round(seconds, 2), "api_mb_per_s": round(size_mb / seconds, 1),
        "server_peak_rss_before_mb": round(before / 1024, 1),
        "server_peak_rss_after_mb": round(after / 1024, 1),
        "server_peak_rss_growth_mb": round((after - before) / 1024, 1),
        "curl_to_sink_seconds": round(sink_seconds, 2),
        "curl_to_sink_mb_per_s": round(size_mb / sink_seconds, 1),
    }, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(work)
    os._exit(0)


if __name__ == "__main__":
    main()
