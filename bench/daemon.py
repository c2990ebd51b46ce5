"""The real ``ingestd serve`` for a benchmark: own data dir, free ports, log to a file.

Like ``tests/e2e/daemon_process.py`` but built for long runs: the daemon's output goes to a file
(no reader thread competing for the CPU), its memory is read from ``/proc`` (``VmRSS``, and
``VmHWM`` for the peak), and the bench reads the database directly — read-only SQLite
connections, so the figures come from the rows the product wrote, without CLI start-up costs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INGESTD = str(Path(sys.executable).with_name("ingestd"))
OPEN_BATCH = ("DETECTING", "WAITING_FOR_CSV", "WAITING_FOR_FILES")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``condition`` until truthy; raise TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


class BenchDaemon:
    """One data dir and config; start/stop ``ingestd serve``, run CLI commands, read rows."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, **overrides: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.sftp_port = free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        sections: dict[str, dict[str, Any]] = {
            "sftp": {"port": self.sftp_port}, "http": {"port": free_port()},
            "pipeline": {"workers": 2}}
        for key, value in overrides.items():
            section, _, name = key.partition("__")
            sections.setdefault(section, {})[name] = value
        lines = [f'data_dir = "{root / "var"}"']
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
        self.config = root / "ingestd.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def landing(self) -> Path:
        return self.var / "landing"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([INGESTD, "--config", str(self.config), *args], input=stdin,
                                capture_output=True, text=True, timeout=600, cwd=self.root,
                                env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"ingestd {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self, timeout: float = 120) -> float:
        """Start serving; returns the time (``time.time()``) it announced its SFTP port."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([INGESTD, "--config", str(self.config), "serve"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                     env=self.env)
        log.close()
        try:
            wait_for(lambda: b"SFTP listening" in self.log_path.read_bytes() or self._died(),
                     timeout, "the daemon to listen", every=0.05)
        except BaseException:  # timed out, or the run is being stopped: no daemon left behind
            self.stop()
            raise
        if self._died():
            raise RuntimeError(f"ingestd serve exited: {self.log_tail()}")
        return time.time()

    def stop(self, timeout: float = 60) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def memory_kb(self, field: str = "VmRSS") -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak so far) of the daemon, in KiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/{self.pid}/status")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows from the daemon's SQLite database, read-only (never blocks the writer: WAL)."""
        uri = f"file:{self.var / 'ingestd.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def add_campaign(self, slug: str, *options: str, user_key: Path | None = None,
                     password: str | None = None) -> None:
        """A campaign and an SFTP user of the same name allowed into it."""
        self.cli("campaign", "create", slug, "--slug", slug, *options)
        auth = ["--public-key", f"{user_key}.pub"] if user_key else ["--password-stdin"]
        self.cli("sftp-user", "add", slug, *auth, "--campaign", slug,
                 stdin=None if user_key else f"{password}\n")

    def file_counts(self, scope_prefix: str) -> dict[str, int]:
        rows = self.query("SELECT status, count(*) FROM files WHERE scope LIKE ? GROUP BY status",
                          (scope_prefix + "%",))
        return dict(rows)

    def wait_imported(self, scope_prefix: str, count: int, timeout: float) -> float:
        """Wait until ``count`` audio files under the scope are terminal; returns time.time()."""
        def done() -> bool:
            rows = self.query("SELECT count(*) FROM files WHERE scope LIKE ? AND kind = 'audio' "
                              "AND status IN ('COMPLETED','FAILED','DUPLICATE','SKIPPED')",
                              (scope_prefix + "%",))
            return rows[0][0] >= count
        wait_for(done, timeout, f"{count} files imported under {scope_prefix}", every=0.25)
        return time.time()


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``, its running descendants (ingestd's SFTP processes, sshd's session
    processes) and its reaped children (ffprobe runs, ended sessions), in seconds."""
    total = 0.0
    for one in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{one}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended meanwhile: its time is in its parent's cutime/cstime now
        # After the command: state is field 3; utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            children = [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        return found
    for child in children:
        found += [child, *_descendants(child)]
    return found
