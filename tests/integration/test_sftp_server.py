"""The embedded SFTP server with real clients (paramiko, OpenSSH) on 127.0.0.1.

The server runs on its own event loop in a background thread, as the daemon runs it; the
blocking clients run in the test's thread.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import make_campaign
from sqlmodel import select

from ingestd.landing import LandingRecorder
from ingestd.models import FileStatus, IngestFile, SftpUser
from sftp_server.auth import Defender, hash_password
from sftp_server.recording import ChangeQueue
from sftp_server.server import changes_recorded, start_sftp_server, stop_sftp_server

PASSWORD = "correct horse"
CALL = "call-JD002-0930.wav"


class RunningServer:
    """``start_sftp_server`` on a private loop in a thread; counts ``on_landed`` calls."""

    def __init__(self, settings, db, clock, defender: Defender | None = None) -> None:
        self.settings, self.db = settings, db
        self.recorder = LandingRecorder(db, clock, settings.sftp.stable_seconds,
                                        settings.sftp.ignore_patterns)
        self.defender = defender
        self.landed_calls = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        self.acceptor = self._call(self._start())
        self.port = self.acceptor.get_port()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._call(stop_sftp_server(self.acceptor))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self):
        changes = ChangeQueue(self.recorder, self._on_landed)
        return await start_sftp_server(self.settings, self.db, changes, defender=self.defender)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def _on_landed(self) -> None:
        self.landed_calls += 1

    def rows(self, landing_path: str) -> list[IngestFile]:
        """The rows of a landing path once the server recorded everything so far (a CLOSE is
        answered before its row is written)."""
        self._call(changes_recorded(self.acceptor))
        return rows(self.db, landing_path)

    def connect(self, username: str = "alice", password: str = PASSWORD) -> Client:
        transport = paramiko.Transport(("127.0.0.1", self.port))
        try:
            transport.connect(username=username, password=password)
            return Client(transport, paramiko.SFTPClient.from_transport(transport))
        except BaseException:
            transport.close()
            raise


class Client:
    def __init__(self, transport: paramiko.Transport, sftp: paramiko.SFTPClient) -> None:
        self.transport, self.sftp = transport, sftp

    def __enter__(self) -> paramiko.SFTPClient:
        return self.sftp

    def __exit__(self, *exc_info: object) -> None:
        self.sftp.close()
        self.transport.close()


@pytest.fixture
def add_user(db, clock) -> Callable[..., SftpUser]:
    def add(username: str = "alice", campaigns: list[str] | None = None,
            public_keys: list[str] | None = None, password: str | None = PASSWORD) -> SftpUser:
        user = SftpUser(username=username,
                        password_hash=hash_password(password) if password else None,
                        public_keys=public_keys or [], campaigns=campaigns or [],
                        created_at=clock.now())
        with db.session() as session:
            session.add(user)
        return user
    return add


@pytest.fixture
def server(settings, db, clock) -> Iterator[RunningServer]:
    settings.sftp.port = 0
    make_campaign(db, clock, "acme")
    with RunningServer(settings, db, clock) as running:
        yield running


def rows(db, landing_path: str) -> list[IngestFile]:
    with db.session() as session:
        query = select(IngestFile).where(IngestFile.landing_path == landing_path)
        return list(session.exec(query).all())


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def incoming_is_empty(settings) -> bool:
    return not any(settings.incoming_path.iterdir())


# Uploads ----------------------------------------------------------------------------------

def test_password_upload_lands_file_and_row(server, add_user, db, settings, corpus):
    add_user()
    source = corpus / "calls" / CALL
    with server.connect() as sftp:
        sftp.put(str(source), f"/acme/{CALL}")
        sftp.mkdir("/acme/2026-01-15")
        sftp.mkdir("/acme/2026-01-15/sub")
        sftp.put(str(source), f"/acme/2026-01-15/sub/{CALL}")
    for rel, scope in ((f"acme/{CALL}", "acme"),
                       (f"acme/2026-01-15/sub/{CALL}", "acme/2026-01-15/sub")):
        assert (settings.landing_path / rel).read_bytes() == source.read_bytes()
        [row] = server.rows(rel)
        assert (row.status, row.scope, row.name) == (FileStatus.DETECTED.value, scope, CALL)
        assert row.size == source.stat().st_size and row.stable_at is not None
    assert 1 <= server.landed_calls <= 2  # once per group of rows written together
    assert incoming_is_empty(settings)


@pytest.mark.usefixtures("openssh")
def test_openssh_sftp_batch_with_public_key(server, add_user, db, settings, corpus, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_user("bob", campaigns=["acme"], password=None,
             public_keys=[key.with_suffix(".pub").read_text()])
    batch = tmp_path / "batch"
    batch.write_text(f'put "{corpus / "calls" / CALL}" /acme/upload.wav\n'
                     "chmod 600 /acme/upload.wav\nls -l /acme\n")
    done = subprocess.run(
        ["sftp", "-b", str(batch), "-i", str(key), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-o", "PasswordAuthentication=no", "-P", str(server.port), "bob@127.0.0.1"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "upload.wav" in done.stdout
    [row] = server.rows("acme/upload.wav")
    assert row.size == (corpus / "calls" / CALL).stat().st_size
    # chmod was accepted and ignored: the landing file keeps the server's mode
    assert stat.S_IMODE((settings.landing_path / "acme/upload.wav").stat().st_mode) != 0o600


def test_temporary_name_is_recorded_only_after_rename(server, add_user, db, settings):
    add_user()
    with server.connect() as sftp:
        with sftp.open("/acme/x.wav.filepart", "wb") as fh:
            fh.write(b"RIFF" + b"\0" * 5000)
        assert server.rows("acme/x.wav.filepart") == [] and server.landed_calls == 0
        assert (settings.landing_path / "acme/x.wav.filepart").is_file()
        sftp.rename("/acme/x.wav.filepart", "/acme/x.wav")
    assert not (settings.landing_path / "acme/x.wav.filepart").exists()
    [row] = server.rows("acme/x.wav")
    assert row.size == 5004 and server.landed_calls == 1


def test_rename_replaces_an_existing_file(server, add_user, db, settings):
    add_user()
    with server.connect() as sftp:
        for name, body in (("a.wav", b"old"), ("a.wav.part", b"newer")):
            with sftp.open(f"/acme/{name}", "wb") as fh:
                fh.write(body)
        sftp.rename("/acme/a.wav.part", "/acme/a.wav")
        sftp.posix_rename("/acme/a.wav", "/acme/b.wav")
    assert (settings.landing_path / "acme/b.wav").read_bytes() == b"newer"
    assert [r.size for r in server.rows("acme/b.wav")] == [5]
    assert server.rows("acme/a.wav") == []  # the old name's waiting row went with the file


def test_handles_of_answered_uploads_serve_asyncssh_requests(server, add_user, settings):
    # The session answers OPEN/WRITE/CLOSE of an upload itself; every other request on the
    # handle (FSTAT, FSETSTAT, READ) is asyncssh's and must find the same file.
    add_user()
    with server.connect() as sftp, sftp.open("/acme/h.wav", "w+") as fh:
        fh.write(b"RIFF" + b"\0" * 100)
        fh.flush()
        assert fh.stat().st_size == 104
        fh.chmod(0o600)
        fh.seek(0)
        assert fh.read(4) == b"RIFF"
    assert (settings.landing_path / "acme/h.wav").read_bytes() == b"RIFF" + b"\0" * 100


def test_upload_with_a_failed_write_never_lands(server, add_user, db, settings):
    # A write the disk refuses (here the file size limit, as a full disk would): the client
    # hears the error, and its CLOSE must not land the partial bytes as a complete file.
    add_user()
    limit = 2 << 20
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        with server.connect() as sftp:
            with pytest.raises(OSError) as refused:  # noqa: SIM117 - the close is checked too
                with sftp.open("/acme/big.wav", "wb") as fh:
                    fh.write(b"RIFF" + b"\0" * (limit + 65536))
            close_error = None
            try:
                sftp.stat("/acme/big.wav")
            except OSError as exc:
                close_error = exc
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert refused.value is not None
    assert close_error is not None  # no landing file: stat finds nothing
    assert not (settings.landing_path / "acme/big.wav").exists()
    assert server.rows("acme/big.wav") == []
    assert incoming_is_empty(settings)


def test_pipelined_requests_are_answered_in_order(server, add_user, settings):
    # A RENAME that creates a.wav, then an exclusive OPEN of a.wav, sent in one piece so the
    # server reads both at once: answered in order, the OPEN is refused. Answered out of
    # order (the OPEN before asyncssh did the RENAME) it would start a second a.wav.
    add_user()
    with server.connect() as sftp, sftp.open("/acme/a.part", "wb") as fh:
        fh.write(b"first")
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.connect(username="alice", password=PASSWORD)
        chan = transport.open_session()
        chan.invoke_subsystem("sftp")
        chan.sendall(sftp_packet(1, struct.pack(">I", 3)))  # INIT, version 3
        assert read_sftp_packet(chan)[0] == 2  # VERSION
        rename = sftp_packet(18, struct.pack(">I", 1) + sftp_string(b"/acme/a.part")
                             + sftp_string(b"/acme/a.wav"))
        exclusive = 0x02 | 0x08 | 0x20  # WRITE | CREAT | EXCL
        open_new = sftp_packet(3, struct.pack(">I", 2) + sftp_string(b"/acme/a.wav")
                               + struct.pack(">II", exclusive, 0))
        chan.sendall(rename + open_new)
        replies = {}
        for _ in range(2):
            kind, body = read_sftp_packet(chan)
            replies[struct.unpack_from(">I", body)[0]] = (kind, body)
    finally:
        transport.close()
    assert replies[1][0] == 101 and struct.unpack_from(">I", replies[1][1], 4)[0] == 0
    kind, body = replies[2]
    assert kind == 101, "the exclusive OPEN got a handle: answered before the RENAME"
    assert b"already exists" in body
    assert (settings.landing_path / "acme/a.wav").read_bytes() == b"first"


def sftp_string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def sftp_packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def read_sftp_packet(chan: paramiko.Channel) -> tuple[int, bytes]:
    """(type, body) of the next SFTP packet on a raw subsystem channel."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = chan.recv(n - len(data))
            assert more, "the server closed the channel"
            data += more
        return data
    (length,) = struct.unpack(">I", exactly(4))
    raw = exactly(length)
    return raw[0], raw[1:]


def test_removing_a_waiting_file_forgets_its_row(server, add_user, db, settings):
    add_user()
    with server.connect() as sftp:
        with sftp.open("/acme/gone.wav", "wb") as fh:
            fh.write(b"RIFF")
        assert len(server.rows("acme/gone.wav")) == 1
        sftp.remove("/acme/gone.wav")
    assert server.rows("acme/gone.wav") == []
    assert not (settings.landing_path / "acme/gone.wav").exists()


def test_existing_file_cannot_be_changed_in_place(server, add_user, settings):
    add_user()
    with server.connect() as sftp:
        with sftp.open("/acme/a.wav", "wb") as fh:
            fh.write(b"first")
        for mode in ("ab", "r+"):
            with pytest.raises(PermissionError):
                sftp.open("/acme/a.wav", mode)
        with sftp.open("/acme/a.wav", "rb") as fh:  # downloading what was uploaded is fine
            assert fh.read() == b"first"
        sftp.chmod("/acme/a.wav", 0o600)
        sftp.utime("/acme/a.wav", (1, 1))
        assert sftp.stat("/acme/a.wav").st_mtime != 1  # accepted, ignored
        sftp.remove("/acme/a.wav")
        sftp.mkdir("/acme/empty")
        sftp.rmdir("/acme/empty")
    assert list((settings.landing_path / "acme").iterdir()) == []


# Uploads that never finish ---------------------------------------------------------------

def _start_upload(server: RunningServer) -> tuple[Client, paramiko.SFTPFile]:
    client = server.connect()
    fh = client.sftp.open("/acme/dropped.wav", "wb")
    fh.write(b"x" * 100_000)
    fh.flush()
    # The caller keeps ``fh``: paramiko sends CLOSE when a file object is garbage-collected.
    return client, fh


@pytest.mark.parametrize("how", ["socket killed", "channel closed"])
def test_dropped_upload_leaves_nothing(server, add_user, db, settings, how):
    add_user()
    client, open_file = _start_upload(server)
    assert len(list(settings.incoming_path.iterdir())) == 1
    if how == "socket killed":
        client.transport.sock.shutdown(socket.SHUT_RDWR)
    else:  # the client ends its session cleanly but never closed the file
        client.sftp.close()
    wait_for(lambda: incoming_is_empty(settings))
    client.transport.close()
    assert open_file.sftp.sock.closed  # the file was never closed, only its session
    assert not (settings.landing_path / "acme/dropped.wav").exists()
    assert server.rows("acme/dropped.wav") == [] and server.landed_calls == 0


def test_dropped_rewrite_keeps_the_earlier_upload_complete(server, add_user, db, settings):
    add_user()
    with server.connect() as sftp, sftp.open("/acme/dropped.wav", "wb") as fh:
        fh.write(b"complete")
    client, open_file = _start_upload(server)  # the same path again, never closed
    [row] = server.rows("acme/dropped.wav")
    assert row.stable_at is None  # being rewritten: not to be taken now
    client.transport.sock.shutdown(socket.SHUT_RDWR)
    wait_for(lambda: incoming_is_empty(settings) and rows(db, "acme/dropped.wav")[0].stable_at)
    client.transport.close()
    assert (settings.landing_path / "acme/dropped.wav").read_bytes() == b"complete"
    assert open_file.sftp.sock.closed


@pytest.mark.usefixtures("openssh")
def test_killed_openssh_client_leaves_nothing(server, add_user, db, settings, tmp_path):
    """A killed ``sftp`` makes its ``ssh`` send EOF: the open upload must not land."""
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_user(public_keys=[key.with_suffix(".pub").read_text()])
    ssh = subprocess.Popen(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes",
         "-o", "UserKnownHostsFile=/dev/null", "-p", str(server.port), "-s",
         "alice@127.0.0.1", "sftp"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    raw = RawSftp(ssh)
    handle = raw.open_for_writing("/acme/killed.wav")
    raw.write(handle, b"y" * 30_000)
    ssh.stdin.close()  # what the ssh process sees when sftp dies mid-transfer
    ssh.wait(10)
    ssh.stdout.close()
    wait_for(lambda: incoming_is_empty(settings))
    assert not (settings.landing_path / "acme/killed.wav").exists()
    assert server.rows("acme/killed.wav") == []


class RawSftp:
    """Just enough SFTP v3 over an ``ssh -s sftp`` pipe to leave a handle open."""

    def __init__(self, ssh: subprocess.Popen) -> None:
        self.ssh, self.next_id = ssh, 1
        self._send(1, struct.pack(">I", 3))  # INIT
        self._receive()

    def open_for_writing(self, path: str) -> bytes:
        flags = 0x02 | 0x08 | 0x10  # WRITE | CREAT | TRUNC
        reply = self._request(3, _string(path.encode()) + struct.pack(">II", flags, 0))
        assert reply[0] == 102, reply  # HANDLE
        length = struct.unpack(">I", reply[5:9])[0]
        return reply[9:9 + length]

    def write(self, handle: bytes, data: bytes) -> None:
        reply = self._request(6, _string(handle) + struct.pack(">Q", 0) + _string(data))
        assert reply[0] == 101 and reply[5:9] == b"\0\0\0\0", reply  # STATUS OK

    def _request(self, kind: int, body: bytes) -> bytes:
        self._send(kind, struct.pack(">I", self.next_id) + body)
        self.next_id += 1
        return self._receive()

    def _send(self, kind: int, body: bytes) -> None:
        self.ssh.stdin.write(struct.pack(">IB", len(body) + 1, kind) + body)
        self.ssh.stdin.flush()

    def _receive(self) -> bytes:
        length = struct.unpack(">I", self.ssh.stdout.read(4))[0]
        return self.ssh.stdout.read(length)


def _string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


# Confinement ----------------------------------------------------------------------------

@pytest.fixture
def campaigns(db, clock) -> None:
    make_campaign(db, clock, "other")
    make_campaign(db, clock, "old", archived=True)


def test_root_lists_only_allowed_live_campaigns(server, add_user, campaigns):
    add_user("alice", campaigns=["acme", "old"])
    add_user("carol")  # no campaigns named: all of them, archived ones excepted
    with server.connect("alice") as sftp:
        assert sftp.listdir("/") == ["acme"]
        assert sftp.listdir("/../..") == ["acme"] and sftp.normalize("..") == "/"
        with pytest.raises(FileNotFoundError):
            sftp.listdir("/old")
    with server.connect("carol") as sftp:
        assert sorted(sftp.listdir("/")) == ["acme", "other"]


def test_paths_cannot_leave_the_users_folders(server, add_user, campaigns, settings):
    add_user("alice", campaigns=["acme"])
    (settings.landing_path / "other").mkdir(parents=True)
    (settings.landing_path / "other" / "secret.wav").write_bytes(b"theirs")
    with server.connect("alice") as sftp:
        for path in ("/etc/passwd", "/acme/../../etc/passwd", "../etc/passwd",
                     "/other/secret.wav", "/../other/secret.wav"):
            with pytest.raises(FileNotFoundError):
                sftp.stat(path)
            with pytest.raises(FileNotFoundError):
                sftp.open(path, "rb")
        with pytest.raises(FileNotFoundError):
            sftp.listdir("/other")
        with pytest.raises(FileNotFoundError):
            sftp.open("/other/mine.wav", "wb")
        with pytest.raises(PermissionError):
            sftp.mkdir("/newdir")
        with pytest.raises(PermissionError):
            sftp.open("/top.wav", "wb")
        with pytest.raises(PermissionError):
            sftp.rename("/acme", "/renamed")
        with sftp.open("/../../acme/clamped.wav", "wb") as fh:  # ".." stops at "/"
            fh.write(b"ok")
    assert (settings.landing_path / "acme" / "clamped.wav").read_bytes() == b"ok"
    assert (settings.landing_path / "other" / "secret.wav").read_bytes() == b"theirs"


def test_links_are_neither_made_nor_followed(server, add_user, settings):
    add_user()
    outside = settings.data_path / "outside"
    outside.mkdir()
    (outside / "x.wav").write_bytes(b"outside")
    (settings.landing_path / "acme").mkdir(parents=True)
    (settings.landing_path / "acme" / "escape").symlink_to(outside)
    with server.connect() as sftp:
        with sftp.open("/acme/a.wav", "wb") as fh:
            fh.write(b"a")
        with pytest.raises(PermissionError):
            sftp.symlink("/acme/a.wav", "/acme/link.wav")
        with pytest.raises(PermissionError):
            sftp.symlink("/etc/passwd", "/acme/passwd")
        assert sftp.listdir("/acme") == ["a.wav"]
        for path in ("/acme/escape/x.wav", "/acme/escape"):
            with pytest.raises(PermissionError):
                sftp.stat(path)
        with pytest.raises(PermissionError):
            sftp.open("/acme/escape/y.wav", "wb")
    assert sorted(p.name for p in outside.iterdir()) == ["x.wav"]


# Authentication and host key --------------------------------------------------------------

def test_wrong_password_and_unknown_user_are_refused(server, add_user):
    add_user()
    for username, password in (("alice", "wrong"), ("mallory", PASSWORD)):
        with pytest.raises(paramiko.AuthenticationException):
            server.connect(username, password)


def test_defender_bans_an_address_after_repeated_failures(settings, db, clock, add_user):
    settings.sftp.port = 0
    make_campaign(db, clock, "acme")
    add_user()
    with RunningServer(settings, db, clock, Defender(threshold=3)) as running:
        for _ in range(4):
            with pytest.raises(paramiko.AuthenticationException):
                running.connect("alice", "wrong")
        with pytest.raises(paramiko.SSHException):
            running.connect("alice", PASSWORD)


def test_host_key_is_created_once_and_kept(settings, db, clock, add_user):
    settings.sftp.port = 0
    make_campaign(db, clock, "acme")
    add_user()
    seen = []
    for _ in range(2):
        with RunningServer(settings, db, clock) as running:
            client = running.connect()
            seen.append(client.transport.get_remote_server_key().get_fingerprint())
            client.__exit__()
    assert seen[0] == seen[1]
    assert stat.S_IMODE(settings.host_key_path.stat().st_mode) == 0o600


def test_host_key_path_parents_are_created(tmp_path: Path):
    from sftp_server.server import load_or_create_host_key

    path = tmp_path / "deep" / "keys" / "host"
    first = load_or_create_host_key(path)
    assert load_or_create_host_key(path).get_fingerprint() == first.get_fingerprint()
    assert [p.name for p in path.parent.iterdir()] == ["host"]


@pytest.fixture
def openssh() -> None:
    if shutil.which("sftp") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH client tools are not installed")
