"""Pipeline throughput with a transcriber that answers at once: calls/s with 1, 2 and 4 workers.

For each worker count a fresh daemon (``pipeline.workers = W``, ``deepgram.base_url`` pointing at
:class:`fake_deepgram.FakeDeepgram`, ``DEEPGRAM_API_KEY=bench``) imports N recordings of a
campaign that does not auto-process (``--transcriber deepgram --analyzer rules``, two rule
checks); once every call is ``PENDING``, ``ingestd call process`` queues them all and the
workers take them through transcription, analysis and scoring. The figure is the steady rate
between the first and the last ``completed_at``, so daemon and CLI start-up do not count.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime
from pathlib import Path

import recordings
from daemon import BenchDaemon, wait_for
from fake_deepgram import FakeDeepgram
from figures import Figure

log = logging.getLogger("bench.pipeline")
WORKERS = (1, 2, 4)
CHECKS = [("greeting", "thank you for calling"), ("closing", "anything else")]


def run(work: Path, calls: int) -> list[Figure]:
    source = work / "files"
    files = recordings.make_set(source, calls, recordings.smallest_valid_bytes(), seed=23,
                                prefix="pipe")
    found = []
    with FakeDeepgram() as fake:
        for workers in WORKERS:
            rate, note = _measure(work / f"w{workers}", files, workers, fake.url)
            found.append(Figure(f"pipeline: calls through all stages, {workers} worker(s)",
                                rate, "calls/s", note=note))
        log.info("pipeline: the fake Deepgram answered %d requests", fake.requests)
    return found


def _measure(root: Path, files: list[Path], workers: int, url: str) -> tuple[float | None, str]:
    daemon = BenchDaemon(root, env={"DEEPGRAM_API_KEY": "bench"}, pipeline__workers=workers,
                         pipeline__poll_seconds=0.2, deepgram__base_url=url,
                         sweeper__interval_seconds=1.0)
    slug = f"pipe{workers}"
    daemon.cli("campaign", "create", slug, "--slug", slug, "--no-auto-process",
               "--transcriber", "deepgram", "--analyzer", "rules", "--batch-window", "1")
    for name, phrase in CHECKS:
        daemon.cli("check", "add", "--campaign", slug, "--name", name, "--kind", "phrase",
                   "--phrase", phrase)
    folder = daemon.landing / slug / "calls"
    folder.mkdir(parents=True)
    for path in files:
        shutil.copy(path, folder / path.name)
    recordings.write_manifest(folder / "manifest.csv", [p.name for p in files])
    daemon.start()
    try:
        daemon.wait_imported(f"{slug}/", len(files), timeout=1800)
        log.info("pipeline %d worker(s): %d calls imported, processing", workers, len(files))
        began = time.time()
        daemon.cli("call", "process", "--campaign", slug)
        wait_for(lambda: _finished(daemon) >= len(files), 1800,
                 f"{len(files)} calls to finish", every=0.25)
        elapsed = time.time() - began
        stamps = daemon.query("SELECT min(completed_at), max(completed_at), "
                              "sum(status = 'FAILED'), sum(status = 'COMPLETED') FROM calls")
    finally:
        daemon.stop()
    first, last, failed, completed = stamps[0]
    if not first or completed < 2:
        return None, f"{failed} of {len(files)} calls FAILED: {daemon.log_tail(3)}"
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    rate = (completed - 1) / span if span > 0 else None
    return rate, (f"{completed} COMPLETED, {failed} FAILED; {elapsed:.1f} s from "
                  "`call process` to the last one")


def _finished(daemon: BenchDaemon) -> int:
    rows = daemon.query("SELECT count(*) FROM calls WHERE status IN ('COMPLETED','FAILED')")
    return rows[0][0]
