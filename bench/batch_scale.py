"""Batch scale: one CSV batch of N small recordings already in the landing folder at start-up.

The files (10.5 s of 8 kHz 8-bit WAV, 84 KB each, all distinct) and a manifest naming them are
written into ``landing/scale/big/`` before ``ingestd serve`` starts; the daemon finds them by its
start-up sweep, batches them and imports them into local storage. The figure is files imported
per second from the daemon's start to the batch ``COMPLETED`` (the note says when it turned
``PROCESSING``: detection and routing before, import after); the peak RSS is the daemon's
``VmHWM``. A run that does not finish within the timeout reports the rate reached so far, and
with ``--profile`` a py-spy sample taken from the daemon's start, beside the polling, shows where
the time goes (the sampler takes CPU from the daemon on a small machine: the profiled rate is a
little lower than the plain one).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import recordings
from daemon import BenchDaemon
from figures import Figure, at_least, at_most
from spy import sample

log = logging.getLogger("bench.scale")
TARGET_FILES_PER_SECOND = 500
TARGET_PEAK_RSS_MB = 400
PROFILE_SECONDS = 15


def run(work: Path, files: int, timeout: float, profile: bool) -> list[Figure]:
    daemon = BenchDaemon(work / "ingestd")
    daemon.cli("campaign", "create", "scale", "--slug", "scale", "--no-auto-process")
    folder = daemon.landing / "scale" / "big"
    log.info("scale: writing %d recordings", files)
    names = [p.name for p in recordings.make_set(folder, files,
                                                recordings.smallest_valid_bytes(), seed=11)]
    recordings.write_manifest(folder / "manifest.csv", names)
    started = time.time()
    ready = daemon.start()
    profile_lines: list[str] = []
    spy: threading.Thread | None = None
    if profile:
        # Sampled while routing and importing, beside the polling: waiting for the sample before
        # polling would time the sampler, not the batch.
        seconds = min(PROFILE_SECONDS, timeout / 2)
        spy = threading.Thread(target=lambda: profile_lines.extend(sample(daemon.pid, seconds)))
        spy.start()
    try:
        finished, processing = _wait_completed(daemon, files, started + timeout)
        peak_mb = daemon.memory_kb("VmHWM") / 1024
        if spy is not None:
            spy.join()
    finally:
        daemon.stop()
    imported = _imported(daemon)
    elapsed = (finished or time.time()) - started
    rate = imported / elapsed
    note = (f"{imported} of {files} imported in {elapsed:.0f} s"
            f" (daemon ready after {ready - started:.1f} s")
    if processing is not None:
        note += f", batch PROCESSING after {processing - started:.1f} s"
    note += ")"
    if finished is None:
        note += f"; NOT COMPLETED within {timeout:g} s"
    return [
        Figure(f"batch scale: {files} files to COMPLETED", rate, "files/s",
               target=f">= {TARGET_FILES_PER_SECOND} files/s",
               passed=finished is not None and at_least(rate, TARGET_FILES_PER_SECOND),
               note=note, details=profile_lines),
        Figure(f"batch scale: {files} files, daemon peak RSS", peak_mb, "MB",
               target=f"< {TARGET_PEAK_RSS_MB} MB", passed=at_most(peak_mb, TARGET_PEAK_RSS_MB)),
    ]


def _imported(daemon: BenchDaemon) -> int:
    rows = daemon.query("SELECT count(*) FROM files WHERE scope = 'scale/big' AND kind = 'audio' "
                        "AND status IN ('COMPLETED','DUPLICATE','FAILED')")
    return rows[0][0]


def _wait_completed(daemon: BenchDaemon, files: int,
                    deadline: float) -> tuple[float | None, float | None]:
    """When the batch closed (None at the deadline) and when it was first seen processing
    (routing done: the rest is import)."""
    last_log = 0.0
    processing: float | None = None
    while time.time() < deadline:
        rows = daemon.query("SELECT status FROM batches WHERE scope = 'scale/big' "
                            "AND csv_file IS NOT NULL")
        if processing is None and rows and rows[0][0] not in ("DETECTING", "WAITING_FOR_CSV",
                                                              "WAITING_FOR_FILES"):
            processing = time.time()
        if rows and rows[0][0] not in ("DETECTING", "WAITING_FOR_CSV", "WAITING_FOR_FILES",
                                       "PROCESSING"):
            log.info("scale: batch %s", rows[0][0])
            return time.time(), processing
        if time.time() - last_log > 15:
            log.info("scale: %d of %d imported, batch %s", _imported(daemon), files,
                     rows[0][0] if rows else "not opened yet")
            last_log = time.time()
        time.sleep(0.25)
    return None, processing
