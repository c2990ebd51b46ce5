"""Where the daemon's time goes: a py-spy sample of the running process, summarised as text.

``py-spy record --idle --format raw`` samples every thread, waiting ones included (a thread in
``fsync`` or waiting on ffprobe is where an import spends its time, so idle samples matter).
The summary counts the share of samples in each product function (inclusive) and in each leaf
frame, so a miss can be explained in a few lines of RESULTS.md. With ``subprocesses`` the
daemon's SFTP processes are sampled too, and summarised apart from the main process: a small
upload's time is mostly theirs.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

log = logging.getLogger("bench.profile")
PRODUCT = re.compile(r"\((?:ingestd|batch|pipeline|sftp_server|cli)/[^)]*\)")
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:]+):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def sample(pid: int, seconds: float, rate: int = 50, subprocesses: bool = False) -> list[str]:
    """Sample ``pid`` (and its child processes with ``subprocesses``) for ``seconds``; the
    summary lines (a line saying why, when py-spy is unavailable or fails)."""
    spy = py_spy()
    if spy is None:
        return ["py-spy is not installed (.venv/bin/pip install py-spy)"]
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        result = subprocess.run([spy, "record", "--pid", str(pid), "--duration",
                                 str(int(seconds)), "--rate", str(rate), "--idle",
                                 "--nonblocking", "--format", "raw", "--output", out.name,
                                 *(["--subprocesses"] if subprocesses else [])],
                                capture_output=True, text=True, timeout=seconds + 60)
        raw = Path(out.name).read_text(errors="replace")
    if result.returncode != 0 or not raw:
        return [f"py-spy failed: {(result.stderr or '').strip()[-300:]}"]
    return summarise(raw)


def summarise(raw: str, top: int = 12) -> list[str]:
    """Inclusive product functions and leaf frames by share of samples (busy threads only),
    the main process and the SFTP processes apart when both were sampled."""
    per_process: dict[str, list[tuple[list[str], int]]] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack.split(";")
        kind = ""
        if frames[0].startswith("process "):  # present with --subprocesses: not a frame
            frames = frames[1:]
            kind = ("SFTP processes" if any("cli/sftp_process.py" in f for f in frames)
                    else "main process")
        if not any(PRODUCT.search(f) for f in frames) or _idle_loop(frames):
            continue  # an idle event loop or pool thread waiting for work
        per_process.setdefault(kind, []).append((frames, int(count_text)))
    if not per_process:
        return ["no samples inside product code"]
    lines: list[str] = []
    for kind in sorted(per_process):
        lines += _summary(per_process[kind], top, f"{kind}: " if kind else "")
    return lines


def _summary(stacks: list[tuple[list[str], int]], top: int, heading: str) -> list[str]:
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = sum(count for _, count in stacks)
    for frames, count in stacks:
        for name in {_short(f, lines=False) for f in frames if PRODUCT.search(f)}:
            inclusive[name] += count
        leaves[_short(frames[-1])] += count
    lines = [f"{heading}{total} samples in product code; inclusive share per function:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("leaf frames (where the thread actually was):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    return lines


def _idle_loop(frames: list[str]) -> bool:
    """The event loop waiting in its selector, a thread parked on a condition: no work.

    uvloop's loop runs in C, so a sample that ends in ``Runner.run`` is that loop between
    callbacks: mostly waiting, partly its own socket work, which py-spy cannot tell apart; it is
    left out, and the shares are of the Python work (a callback shows as frames above it)."""
    leaf = frames[-1]
    if "Condition.wait (threading.py" in leaf or leaf.startswith("Runner.run (asyncio/runners.py"):
        return True
    return "selectors.py" in leaf and any("_run_once" in f for f in frames)


def _short(frame: str, lines: bool = True) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    where = f"{match['file']}:{match['line']}" if lines else match["file"]
    return f"{match['func']} ({where})"
