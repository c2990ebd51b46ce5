"""WRITE packets with trailing bytes (rclone 1.60's pkg/sftp) against the real server.

A raw SFTP conversation over a paramiko channel sends exactly such a packet; Debian's rclone
shows the same thing happens in the wild for any file over 32 KiB.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from collections.abc import Iterator

import paramiko
import pytest
from conftest import make_campaign
from test_sftp_server import PASSWORD, RunningServer, wait_for

from ingestd.models import SftpUser
from sftp_server.auth import hash_password

FXP_INIT, FXP_OPEN, FXP_WRITE, FXP_CLOSE = 1, 3, 6, 4
FXP_STATUS, FXP_HANDLE, FX_OK = 101, 102, 0


@pytest.fixture
def server(settings, db, clock) -> Iterator[RunningServer]:
    settings.sftp.port = 0
    make_campaign(db, clock, "acme")
    with db.session() as session:
        session.add(SftpUser(username="alice", password_hash=hash_password(PASSWORD),
                             public_keys=[], campaigns=[], created_at=clock.now()))
    with RunningServer(settings, db, clock) as running:
        yield running


class RawChannel:
    """SFTP v3 by hand over a paramiko ``sftp`` subsystem channel."""

    def __init__(self, port: int) -> None:
        self.transport = paramiko.Transport(("127.0.0.1", port))
        self.transport.connect(username="alice", password=PASSWORD)
        self.chan = self.transport.open_session()
        self.chan.invoke_subsystem("sftp")
        self.send(FXP_INIT, struct.pack(">I", 3))
        assert self.receive()[0] == 2  # VERSION

    def request(self, kind: int, request_id: int, body: bytes) -> bytes:
        self.send(kind, struct.pack(">I", request_id) + body)
        return self.receive()

    def send(self, kind: int, body: bytes) -> None:
        self.chan.sendall(struct.pack(">IB", len(body) + 1, kind) + body)

    def receive(self) -> bytes:
        length = struct.unpack(">I", self._read(4))[0]
        return self._read(length)

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.chan.recv(size - len(data))
            assert chunk, "the server closed the channel"
            data += chunk
        return data

    def close(self) -> None:
        self.chan.close()
        self.transport.close()


def string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def assert_ok(reply: bytes) -> None:
    assert reply[0] == FXP_STATUS and struct.unpack(">I", reply[5:9])[0] == FX_OK, reply


def test_write_with_trailing_bytes_lands_exactly_its_declared_data(server, db, settings):
    raw = RawChannel(server.port)
    try:
        flags = 0x02 | 0x08 | 0x10  # WRITE | CREAT | TRUNC
        reply = raw.request(FXP_OPEN, 1, string(b"/acme/r.wav") + struct.pack(">II", flags, 0))
        assert reply[0] == FXP_HANDLE, reply
        handle = reply[9:9 + struct.unpack(">I", reply[5:9])[0]]
        first, second = b"A" * 40_000, b"B" * 1000
        for request_id, (offset, data) in enumerate([(0, first), (40_000, second)], start=2):
            body = string(handle) + struct.pack(">Q", offset) + string(data) + b"\0" * 32
            assert_ok(raw.request(FXP_WRITE, request_id, body))
        assert_ok(raw.request(FXP_CLOSE, 9, string(handle)))
    finally:
        raw.close()
    assert (settings.landing_path / "acme" / "r.wav").read_bytes() == first + second


@pytest.fixture
def rclone() -> str:
    path = shutil.which("rclone")
    if path is None:
        pytest.skip("rclone is not installed (Debian package rclone)")
    return path


def test_rclone_uploads_a_file_over_32_kib(server, settings, rclone, corpus, tmp_path, caplog):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(corpus / "calls" / "call-JD002-0930.wav", source)  # 793 KiB
    obscured = subprocess.run([rclone, "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {"RCLONE_CONFIG_T_TYPE": "sftp", "RCLONE_CONFIG_T_HOST": "127.0.0.1",
           "RCLONE_CONFIG_T_PORT": str(server.port), "RCLONE_CONFIG_T_USER": "alice",
           "RCLONE_CONFIG_T_PASS": obscured, "RCLONE_CONFIG_T_MD5SUM_COMMAND": "none",
           "RCLONE_CONFIG_T_SHA1SUM_COMMAND": "none", "PATH": "/usr/bin:/bin"}
    caplog.set_level(logging.INFO, logger="sftp_server.session")
    result = subprocess.run([rclone, "copy", "--config", str(tmp_path / "rclone.conf"),
                             "--retries", "1", str(source), "t:acme"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    landed = settings.landing_path / "acme" / "call-JD002-0930.wav"
    assert landed.read_bytes() == (source / "call-JD002-0930.wav").read_bytes()
    # This rclone does send the malformed packets: the repair is what made the upload work.
    wait_for(lambda: "sftp_write_packets_trimmed" in caplog.text)


@pytest.mark.parametrize("request_kind", ["exec", "shell", "scp", "other subsystem"])
def test_sessions_serve_sftp_and_nothing_else(server, request_kind):
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.connect(username="alice", password=PASSWORD)
    try:
        chan = transport.open_session()
        with pytest.raises(paramiko.SSHException):
            if request_kind == "exec":
                chan.exec_command("md5sum /acme/x.wav")
            elif request_kind == "shell":
                chan.invoke_shell()
            elif request_kind == "scp":
                chan.exec_command("scp -t /acme/")
            else:
                chan.invoke_subsystem("netconf")
    finally:
        transport.close()
