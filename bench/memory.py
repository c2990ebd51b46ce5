"""Memory: a 500 MB upload through SFTP must not grow the daemon's RSS by 50 MB or more.

The recording (48 kHz stereo 16-bit WAV, 43 minutes for 500 MB: under every default limit) is
uploaded with ``sftp -b`` and then imported (probe, hash, store) by the daemon with its default
settings. A thread samples the daemon's ``VmRSS`` every 20 ms from just before the upload until
the file is ``COMPLETED``; the figure is the highest sample minus the idle baseline. The HTTP side
is measured by ``bench/api_upload.py`` when that script is present (see ``suite``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import recordings
from daemon import BenchDaemon
from figures import Figure, at_most
from sshd import sftp_upload

log = logging.getLogger("bench.memory")
TARGET_GROWTH_MB = 50
SAMPLE_SECONDS = 0.02


def run(work: Path, key: Path, megabytes: int) -> list[Figure]:
    source = work / "files" / "big.wav"
    source.parent.mkdir(parents=True, exist_ok=True)
    recordings.write_wav(source, megabytes * 1_000_000, seed=5, fmt=recordings.STUDIO)
    daemon = BenchDaemon(work / "ingestd")
    daemon.start()
    try:
        daemon.add_campaign("memory", "--batch-window", "1", "--no-auto-process", user_key=key)
        time.sleep(2)  # let start-up allocations settle before the baseline
        baseline = daemon.memory_kb()
        peak = [baseline]
        done = threading.Event()
        sampler = threading.Thread(target=_sample, args=(daemon, peak, done), daemon=True)
        sampler.start()
        seconds = sftp_upload(daemon.sftp_port, "memory", key,
                              ["-mkdir /memory/big", "cd /memory/big",
                               f"put {source}"], work / "memory.sftp")
        daemon.wait_imported("memory/big", 1, timeout=600)
        done.set()
        sampler.join()
        status = daemon.file_counts("memory/big")
    finally:
        daemon.stop()
    growth_mb = (peak[0] - baseline) / 1024
    return [Figure(f"memory: {megabytes} MB SFTP upload + import, daemon RSS growth",
                   growth_mb, "MB", target=f"< {TARGET_GROWTH_MB} MB",
                   passed=at_most(growth_mb, TARGET_GROWTH_MB),
                   note=f"baseline {baseline / 1024:.0f} MB, upload {seconds:.1f} s "
                        f"({megabytes / seconds:.0f} MB/s), file {status}")]


def _sample(daemon: BenchDaemon, peak: list[int], done: threading.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], daemon.memory_kb())
        time.sleep(SAMPLE_SECONDS)
