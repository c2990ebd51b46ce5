"""The SFTP server's own processes: several share one port, and none outlives the daemon."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from daemon_process import DaemonProcess, wait_for

pytestmark = pytest.mark.e2e
PASSWORD = "s3cret-processes"


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return [int(c) for c in fh.read().split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def recorded(daemon: DaemonProcess) -> int:
    with sqlite3.connect(daemon.root / "var" / "ingestd.db", timeout=30) as connection:
        return connection.execute("SELECT count(DISTINCT name) FROM files").fetchone()[0]


def upload(daemon: DaemonProcess, name: str, data: bytes, password: str = PASSWORD) -> None:
    transport = paramiko.Transport(("127.0.0.1", daemon.sftp_port))
    try:
        transport.connect(username="acme", password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        with sftp.open(f"/acme/{name}", "wb") as fh:
            fh.write(data)
    finally:
        transport.close()


def start(tmp_path: Path, processes: int, **settings: object) -> DaemonProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(tmp_path, sftp__processes=processes, pipeline__workers=0,
                           **settings)
    daemon.cli("campaign", "create", "Acme", "--slug", "acme", "--no-auto-process")
    daemon.cli("sftp-user", "add", "acme", "--password-stdin", "--campaign", "acme",
               stdin=PASSWORD + "\n")
    daemon.start()
    return daemon


def test_several_processes_share_the_port_and_record_every_upload(tmp_path: Path) -> None:
    daemon = start(tmp_path, processes=3)
    try:
        assert daemon.proc is not None
        servers = children(daemon.proc.pid)
        assert len(servers) == 3
        for i in range(12):  # new connections: the kernel spreads them over the processes
            upload(daemon, f"f{i:02d}.txt", f"file {i}".encode())
        wait_for(lambda: recorded(daemon) == 12, 30, "a row for each of the 12 files")
    finally:
        daemon.stop()
    assert not any(alive(pid) for pid in servers)


def test_failed_logins_are_counted_across_processes_and_the_ban_holds_in_each(
        tmp_path: Path) -> None:
    # Threshold 3: the fourth wrong password bans. Each connection goes to either process, so
    # per-process counts would see about two failures each and ban no one.
    daemon = start(tmp_path, processes=2, sftp__defender_threshold=3)
    try:
        for _ in range(4):
            with pytest.raises(paramiko.AuthenticationException):
                upload(daemon, "never.txt", b"x", password="wrong")
        wait_for(lambda: "address_banned address=127.0.0.1" in daemon.log(), 30,
                 "the ban in the daemon's log")
        for i in range(8):  # the right password now: refused by whichever process answers
            with pytest.raises(paramiko.SSHException):
                upload(daemon, f"banned{i}.txt", b"x")
    finally:
        daemon.stop()
    assert recorded(daemon) == 0


def test_kill_9_of_the_daemon_ends_its_sftp_processes(tmp_path: Path) -> None:
    daemon = start(tmp_path, processes=2)
    assert daemon.proc is not None
    servers = children(daemon.proc.pid)
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    # Orphans read EOF on their lifeline and stop; nothing may keep the port.
    wait_for(lambda: not any(alive(pid) for pid in servers), 20, "the SFTP processes to end")
    daemon.start()  # the port is free again
    try:
        upload(daemon, "after.txt", b"after the restart")
    finally:
        daemon.stop()


def test_a_dead_sftp_process_stops_the_daemon_with_the_reason(tmp_path: Path) -> None:
    daemon = start(tmp_path, processes=1)
    assert daemon.proc is not None
    [server] = children(daemon.proc.pid)
    os.kill(server, signal.SIGKILL)
    code = daemon.proc.wait(timeout=30)
    assert code == 1
    time.sleep(0.2)  # the output reader catches up
    assert daemon.proc.stdout is not None
    daemon.proc.stdout.close()
    daemon.proc = None
    assert "the SFTP server process" in daemon.log() and "ended" in daemon.log()


def test_a_taken_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    first = start(tmp_path / "a", processes=1)
    try:
        (tmp_path / "b").mkdir()
        second = DaemonProcess(tmp_path / "b")
        second.config.write_text(second.config.read_text().replace(
            f"port = {second.sftp_port}", f"port = {first.sftp_port}", 1))
        result = subprocess.run([*second_command(second), "serve"], capture_output=True,
                                text=True, timeout=60, cwd=second.root)
        assert result.returncode == 1
        assert "the SFTP server did not start" in result.stderr
        assert "cannot listen" in result.stderr
    finally:
        first.stop()


def second_command(daemon: DaemonProcess) -> list[str]:
    from daemon_process import INGESTD
    return [INGESTD, "--config", str(daemon.config)]
