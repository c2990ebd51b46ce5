"""Detection latency: from the client's close of a CSV batch's last file to ``PROCESSING``.

One paramiko SFTP connection uploads batch after batch (a manifest naming two recordings, then
the two recordings), each into its own folder, a fixed gap apart; the close of the last file is
timestamped just before the CLOSE request is sent. A poller thread reads the batches table
(read-only SQLite, every 5 ms) and timestamps the first time each folder's batch is seen past its
open statuses (``PROCESSING`` or already closed: the import follows at once). Run once with
``sftp.stable_seconds = 0`` (target p99 <= 500 ms) and once with the default (target p99 <=
stable_seconds + 500 ms). The campaign does not auto-process: the pipeline stays idle.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from pathlib import Path

import paramiko
import recordings
from daemon import OPEN_BATCH, BenchDaemon
from figures import Figure, at_most

log = logging.getLogger("bench.detection")
PASSWORD = "bench-detect-42"
GAP_SECONDS = 0.3
POLL_SECONDS = 0.005
DEFAULT_STABLE_SECONDS = 2.0


def run(work: Path, batches: int) -> list[Figure]:
    files = _recordings(work)
    found = []
    for stable in (0.0, DEFAULT_STABLE_SECONDS):
        daemon = BenchDaemon(work / f"stable-{stable:g}", sftp__stable_seconds=stable)
        daemon.start()
        try:
            daemon.add_campaign("detect", "--no-auto-process", password=PASSWORD)
            latencies = measure(daemon, files, batches)
        finally:
            daemon.stop()
        found.append(_figure(stable, latencies, batches))
    return found


def _recordings(work: Path) -> list[Path]:
    size = recordings.smallest_valid_bytes()
    return recordings.make_set(work / "files", 2, size, seed=7, prefix="det")


def _figure(stable: float, latencies: list[float], batches: int) -> Figure:
    limit = stable + 0.5
    if not latencies:
        return Figure(f"detection, stable_seconds={stable:g}: p99", None, "ms",
                      target=f"<= {limit * 1000:.0f} ms", passed=False, note="no batch seen")
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return Figure(
        f"detection, stable_seconds={stable:g}: p99", p99 * 1000, "ms",
        target=f"<= {limit * 1000:.0f} ms", passed=at_most(p99, limit) and len(ordered) == batches,
        note=f"median {median * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms over "
             f"{len(ordered)} of {batches} batches")


def measure(daemon: BenchDaemon, files: list[Path], batches: int) -> list[float]:
    """Upload ``batches`` CSV batches; the close-to-PROCESSING latency of each, in seconds."""
    closed: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    poller = threading.Thread(target=_poll, args=(daemon, closed, seen, done), daemon=True)
    poller.start()
    transport = paramiko.Transport(("127.0.0.1", daemon.sftp_port))
    transport.connect(username="detect", password=PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(transport)
    try:
        for i in range(batches):
            scope = f"b{i:04d}"
            closed[f"detect/{scope}"] = _upload_batch(sftp, f"/detect/{scope}", files)
            time.sleep(GAP_SECONDS)
        deadline = time.monotonic() + DEFAULT_STABLE_SECONDS + 30
        while len(seen) < batches and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        done.set()
        sftp.close()
        transport.close()
        poller.join()
    log.info("detection: %d of %d batches seen", len(seen), batches)
    return [seen[s] - closed[s] for s in seen if s in closed]


def _upload_batch(sftp: paramiko.SFTPClient, folder: str, files: list[Path]) -> float:
    """Upload the manifest then the recordings; return the time the last CLOSE was sent."""
    sftp.mkdir(folder)
    with sftp.open(f"{folder}/manifest.csv", "wb") as fh:
        fh.write(("file_name,customer_id\n" + "".join(f"{f.name},C{i}\n"
                                                       for i, f in enumerate(files))).encode())
    for path in files:
        handle = sftp.open(f"{folder}/{path.name}", "wb")
        handle.write(path.read_bytes())
        handle.flush()
        closed_at = time.time()
        handle.close()
    return closed_at


def _poll(daemon: BenchDaemon, closed: dict[str, float], seen: dict[str, float],
          done: threading.Event) -> None:
    marks = ",".join("?" * len(OPEN_BATCH))
    sql = (f"SELECT DISTINCT scope FROM batches WHERE scope LIKE 'detect/%' "
           f"AND csv_file IS NOT NULL AND status NOT IN ({marks})")
    while not done.is_set():
        now = time.time()
        for (scope,) in daemon.query(sql, OPEN_BATCH):
            if scope not in seen and scope in closed:
                seen[scope] = now
        time.sleep(POLL_SECONDS)
