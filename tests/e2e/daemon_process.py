"""Run the real ``ingestd`` daemon and CLI as subprocesses in a temp dir, on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INGESTD = str(Path(sys.executable).with_name("ingestd"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


class DaemonProcess:
    """One data dir, one config file; start/stop the daemon and run CLI commands against it."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        self.sftp_port = free_port()
        self.config = root / "ingestd.toml"
        sections = {
            "sftp": {"port": self.sftp_port, "stable_seconds": 0.5},
            "http": {"port": free_port()},
            "sweeper": {"interval_seconds": 1.0},
            "pipeline": {"workers": 2, "poll_seconds": 0.3},
        }
        for key, value in overrides.items():
            section, _, name = key.partition("__")
            sections.setdefault(section, {})[name] = value
        self.config.write_text(_toml(root / "var", sections))
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run([INGESTD, "--config", str(self.config), *args], input=stdin,
                                capture_output=True, text=True, timeout=60, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"ingestd {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout if check else result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.output = []
        self.proc = subprocess.Popen([INGESTD, "--config", str(self.config), "serve"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=self.root, env=env)
        threading.Thread(target=self._drain, daemon=True).start()
        wait_for(lambda: any("SFTP listening" in line for line in self.output), timeout,
                 "the daemon to listen")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def log(self) -> str:
        return "".join(self.output)

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.output.append(line)
        except ValueError:  # the pipe was closed by stop()
            pass


def _toml(data_dir: Path, sections: dict[str, dict[str, Any]]) -> str:
    lines = [f'data_dir = "{data_dir}"']
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"
