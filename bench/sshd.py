"""The peer: a private OpenSSH ``sshd`` serving ``internal-sftp`` on loopback, and the client.

The sshd has its own config, host key, pid file and authorized keys in a temp dir, listens on a
free high port of 127.0.0.1 and forces ``internal-sftp`` (no shell). It runs as the current user
(root here: ``PermitRootLogin prohibit-password``, key auth only); it is thrown away afterwards.
Both servers are driven by the same client, OpenSSH ``sftp -b``, with the same cipher.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from daemon import free_port, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CIPHER = "aes128-gcm@openssh.com"
CLIENT_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                  "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-c", CIPHER]


def make_key(path: Path) -> Path:
    """An ed25519 client key pair at ``path`` / ``path.pub``."""
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
    return path


class LoopbackServer:
    """A throwaway SFTP server process on a free port of 127.0.0.1; uploads land under
    ``root / "uploads"``, its output goes to ``root / log_name``."""

    label = "server"  # in the bench's log lines and script names
    log_name = "server.log"
    settle_seconds = 0.0  # wait after an upload before reading the server's CPU time

    def __init__(self, root: Path, client_key: Path) -> None:
        self.root = root
        self.uploads = root / "uploads"
        self.port = free_port()
        self.user = os.environ.get("USER") or "root"
        self.client_key = client_key
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client_path(self, name: str) -> str:
        """The path a client uploads to for the folder ``uploads / name``."""
        return str(self.uploads / name)

    def _spawn(self, command: list[str]) -> None:
        """Start ``command`` with its output in the log; wait until the port answers."""
        log = (self.root / self.log_name).open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._listening, 30, f"{command[0]} to listen", every=0.05)

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[0]} exited: "
                               + (self.root / self.log_name).read_text())
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None


class OpenSshPeer(LoopbackServer):
    """A throwaway sshd."""

    label = "OpenSSH"
    log_name = "sshd.log"
    # The session processes exit, and are reaped into the listener's CPU time, just after.
    settle_seconds = 1.0

    def start(self) -> None:
        if not Path(SSHD).exists():
            raise RuntimeError("sshd not installed: apt-get install openssh-server")
        self.uploads.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        host_key = make_key(self.root / "ssh_host_ed25519_key")
        shutil.copy(f"{self.client_key}.pub", self.root / "authorized_keys")
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.root}/authorized_keys",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "UseDNS no",
            "Subsystem sftp internal-sftp", "ForceCommand internal-sftp", "LogLevel ERROR",
        ]) + "\n")
        self._spawn([SSHD, "-D", "-e", "-f", str(config)])


def sftp_upload(port: int, user: str, key: Path, commands: list[str], script: Path) -> float:
    """Run ``sftp -b`` with ``commands``; return the wall time in seconds (raises on failure)."""
    script.write_text("\n".join(commands) + "\n")
    started = time.perf_counter()
    proc = start_sftp(port, user, key, script)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"sftp -b {script.name} to port {port} failed: {err.decode()[-500:]}")
    return elapsed


def start_sftp(port: int, user: str, key: Path, script: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sftp", "-q", "-b", str(script), "-i", str(key), "-P", str(port),
                             *CLIENT_OPTIONS, f"{user}@127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def parallel_uploads(port: int, user: str, key: Path, scripts: list[Path]) -> float:
    """Several ``sftp -b`` clients at once; the wall time until the last one ends."""
    started = time.perf_counter()
    procs = [start_sftp(port, user, key, s) for s in scripts]
    failures = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(err.decode()[-300:])
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(procs)} sftp clients failed: {failures[0]}")
    return elapsed
