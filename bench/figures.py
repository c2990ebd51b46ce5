"""Figures, the one results table, and the machine/version header of a benchmark run.

A :class:`Figure` is one row of the table: what was measured, ingestd's value, the peer's value
(OpenSSH, or an empty database for the growth figures) when there is one, their ratio, the
target and whether it passed. Benchmarks return figures; ``suite`` prints them all at the end.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


@dataclass
class Figure:
    """One measured figure; ``passed`` None means there is no target to pass (informational)."""

    name: str
    ingestd: float | None
    unit: str
    peer: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    details: list[str] = field(default_factory=list)  # plans, profiles: printed after the table

    @property
    def ratio(self) -> float | None:
        if self.ingestd is None or not self.peer:
            return None
        return self.ingestd / self.peer

    def cells(self) -> list[str]:
        verdict = {True: "pass", False: "FAIL", None: "-"}[self.passed]
        ratio = self.ratio
        return [self.name, _num(self.ingestd, self.unit), _num(self.peer, self.unit),
                f"{ratio:.2f}x" if ratio is not None else "-", self.target or "-", verdict]

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else value >= floor


def at_most(value: float | None, ceiling: float) -> bool | None:
    return None if value is None else value <= ceiling


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


HEADERS = ["figure", "ingestd", "peer", "ratio", "target", "pass/fail"]


def table(figures: list[Figure], markdown: bool = False) -> str:
    """The results as one aligned text table (or a Markdown table), notes below it."""
    rows = [f.cells() for f in figures]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in [HEADERS, ["-" * w for w in widths], *rows]]
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["", *notes] if notes else []))


def details(figures: list[Figure]) -> str:
    """Query plans and profiles attached to figures, one titled block each."""
    blocks = []
    for fig in figures:
        if fig.details:
            blocks.append(f"### {fig.name}\n\n```\n" + "\n".join(fig.details) + "\n```")
    return "\n\n".join(blocks)


def machine() -> dict[str, str]:
    """Date, machine and the versions that matter to these figures."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", _read("/proc/meminfo")).group(1))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {cpu}, {mem_kb / 1024 / 1024:.1f} GiB RAM",
        "load average at start": " ".join(_read("/proc/loadavg").split()[:3]),
        "python": sys.version.split()[0],
        "asyncssh": _module_version("asyncssh"),
        "uvloop": _module_version("uvloop"),
        "openssh": _command(["ssh", "-V"]),
        "sqlite": sqlite3.sqlite_version,
        "postgres": _command(["psql", "--version"]),
        "ffmpeg": _command(["ffmpeg", "-version"]).split(" Copyright")[0],
    }


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "installed"))


def _command(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def parse_external(output: str, source: str) -> list[Figure]:
    """Figures printed by a standalone bench script as JSON lines (other lines are ignored).

    A line is ``{"figure": …, "ingestd": …, "unit": …, "peer": …, "target": …, "pass": …}``.
    """
    found = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "figure" in data:
            found.append(Figure(name=str(data["figure"]), ingestd=data.get("ingestd"),
                                unit=str(data.get("unit", "")), peer=data.get("peer"),
                                target=str(data.get("target", "")), passed=data.get("pass"),
                                note=str(data.get("note", "") or f"from {source}")))
    return found


def api_upload_figures(output: str) -> list[Figure]:
    """The figures of ``bench/api_upload.py``, which prints one JSON document of its own."""
    try:
        data = json.loads(output[output.index("{"):])
    except ValueError:
        return []
    growth = data.get("server_peak_rss_growth_mb")
    size = data.get("file_mb")
    return [
        Figure(f"memory: {size:g} MB HTTP API upload, server peak RSS growth", growth, "MB",
               target="< 50 MB", passed=at_most(growth, 50),
               note=f"HTTP status {data.get('api_status')} (from api_upload.py)"),
        Figure(f"HTTP API upload of {size:g} MB (peer: curl to a discarding sink)",
               data.get("api_mb_per_s"), "MB/s", peer=data.get("curl_to_sink_mb_per_s"),
               note="includes the intake's probe, hash and store after the body"),
    ]
