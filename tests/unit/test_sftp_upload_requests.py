"""UploadRequests: an upload's OPEN, WRITE and CLOSE answered from the packet bytes.

The replies are checked byte for byte against the SFTP v3 wire format (draft-02); everything
the fast path must leave to asyncssh is checked to return False with nothing changed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import asyncssh
import pytest

from sftp_server.upload import Upload
from sftp_server.upload_requests import UploadRequests

FXF_WRITE, FXF_CREAT, FXF_TRUNC = 0x02, 0x08, 0x10
OPEN, CLOSE, WRITE, STAT = 3, 4, 6, 17


def string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def packet(kind: int, request_id: int, body: bytes) -> bytes:
    return struct.pack(">IBI", len(body) + 5, kind, request_id) + body


def open_packet(path: bytes, pflags: int = FXF_WRITE | FXF_CREAT | FXF_TRUNC,
                attrs: bytes = struct.pack(">II", 0x4, 0o644), request_id: int = 1) -> bytes:
    return packet(OPEN, request_id, string(path) + struct.pack(">I", pflags) + attrs)


def write_packet(handle: bytes, offset: int, data: bytes, request_id: int = 2) -> bytes:
    return packet(WRITE, request_id, string(handle) + struct.pack(">Q", offset) + string(data))


def status(request_id: int, code: int, message: bytes = b"", lang: bytes = b"") -> bytes:
    return packet(101, request_id, struct.pack(">I", code) + string(message) + string(lang))


class FakeServer:
    """The two LandingSftpServer calls the fast path makes, over real Upload files."""

    def __init__(self, root: Path) -> None:
        self.incoming = root / "incoming"
        self.landing = root / "landing"
        self.incoming.mkdir()
        self.landing.mkdir()
        self.landed: list[str] = []
        self.refuse: Exception | None = None

    def open_new_upload(self, path: bytes, pflags: int) -> Upload | None:
        if self.refuse is not None:
            raise self.refuse
        final = self.landing / path.decode()
        if final.exists():
            return None
        return Upload(self.incoming, path.decode(), final, "alice")

    def land(self, upload: Upload) -> None:
        self.landed.append(upload.land().rel_path)


@pytest.fixture
def setup(tmp_path):
    server = FakeServer(tmp_path)
    handles: dict[bytes, object] = {}
    sent: list[bytes] = []
    counter = iter(range(100))
    requests = UploadRequests(server, handles, lambda: next(counter).to_bytes(4, "big"),
                              sent.append)
    return requests, server, handles, sent


def test_open_write_close_land_the_file_with_exact_replies(setup):
    requests, server, handles, sent = setup
    assert requests.answer(open_packet(b"call.wav", request_id=11))
    handle = (0).to_bytes(4, "big")
    assert sent == [packet(102, 11, string(handle))]
    assert isinstance(handles[handle], Upload)  # in asyncssh's table: FSTAT etc. find it
    assert requests.answer(write_packet(handle, 0, b"RIFF", request_id=12))
    assert requests.answer(write_packet(handle, 4, b"data", request_id=13))
    assert requests.answer(packet(CLOSE, 14, string(handle)))
    assert sent[1:] == [status(12, 0), status(13, 0), status(14, 0)]
    assert handle not in handles
    assert server.landed == ["call.wav"]
    assert (server.landing / "call.wav").read_bytes() == b"RIFFdata"


@pytest.mark.parametrize("request_packet", [
    packet(STAT, 1, string(b"call.wav")),  # not an upload request
    open_packet(b"call.wav", pflags=0x01),  # opened for reading
    open_packet(b"call.wav", attrs=struct.pack(">I", 0x80000000) + struct.pack(">I", 0)),
    open_packet(b"call.wav", attrs=struct.pack(">II", 0x4, 0o644) + b"x"),  # junk after attrs
    open_packet(b"call.wav", attrs=struct.pack(">I", 0x4)),  # attrs overrun the packet
    write_packet(b"\0\0\0\7", 0, b"data"),  # not an open handle
    packet(CLOSE, 3, string(b"\0\0\0\7")),
    packet(OPEN, 1, struct.pack(">I", 999) + b"short"),  # path overruns the packet
])
def test_what_asyncssh_must_answer_is_left_untouched(setup, request_packet):
    requests, server, handles, sent = setup
    assert not requests.answer(request_packet)
    assert (sent, handles, list(server.incoming.iterdir())) == ([], {}, [])


def test_open_of_an_existing_file_is_left_to_asyncssh(setup):
    requests, server, handles, sent = setup
    (server.landing / "call.wav").write_bytes(b"old")
    assert not requests.answer(open_packet(b"call.wav"))
    assert (sent, handles) == ([], {})


def test_refused_open_is_left_to_asyncssh_with_nothing_made(setup):
    requests, server, handles, sent = setup
    server.refuse = asyncssh.SFTPNoSuchFile("the folder does not exist: create it first")
    assert not requests.answer(open_packet(b"missing/call.wav"))
    assert (sent, handles, list(server.incoming.iterdir())) == ([], {}, [])


def test_write_to_a_handle_asyncssh_opened_for_reading_is_left_to_it(setup, tmp_path):
    requests, _server, handles, sent = setup
    with open(tmp_path / "x", "wb") as reading:
        handles[b"r"] = reading
        assert not requests.answer(write_packet(b"r", 0, b"data"))
    assert sent == []


def test_write_with_a_data_length_that_does_not_fit_is_left_to_asyncssh(setup):
    requests, _, handles, sent = setup
    assert requests.answer(open_packet(b"call.wav"))
    handle = next(iter(handles))
    broken = write_packet(handle, 0, b"data")[:-1]
    broken = struct.pack(">I", len(broken) - 4) + broken[4:]
    assert not requests.answer(broken)
    assert len(sent) == 1  # the HANDLE only
    handles[handle].discard()


def test_failed_landing_answers_with_the_reason(setup):
    requests, server, handles, sent = setup
    assert requests.answer(open_packet(b"sub/call.wav"))
    handle = next(iter(handles))
    (server.landing / "sub").write_text("a file where the folder should be")
    assert requests.answer(packet(CLOSE, 9, string(handle)))
    code, = struct.unpack_from(">I", sent[-1], 9)
    message = sent[-1][17:17 + struct.unpack_from(">I", sent[-1], 13)[0]]
    assert sent[-1][4] == 101 and code != 0  # a failed STATUS (asyncssh's code for ENOTDIR)
    assert message == b"Not a directory"  # the OS's words, as asyncssh passes them on
    assert handle not in handles and list(server.incoming.iterdir()) == []


def test_failed_write_is_answered_with_the_error_and_marks_the_upload(setup):
    requests, _, handles, sent = setup
    assert requests.answer(open_packet(b"call.wav"))
    handle = next(iter(handles))
    upload = handles[handle]
    read_only = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(read_only, upload.fileno())  # every pwrite now fails with EBADF
        assert requests.answer(write_packet(handle, 0, b"data", request_id=21))
    finally:
        os.close(read_only)
    assert sent[-1][4] == 101 and struct.unpack_from(">I", sent[-1], 9)[0] == 4  # FX_FAILURE
    assert b"Bad file descriptor" in sent[-1]
    assert upload.write_error is not None  # its CLOSE will not land it (LandingSftpServer)
    upload.discard()


def test_an_error_after_the_landing_began_is_answered_not_handed_to_asyncssh(setup, caplog):
    """Past the parsing the request has acted (here: its handle is gone), so even an error of
    the kind an overrunning field raises must be answered, never left to asyncssh to redo."""
    requests, server, handles, sent = setup
    assert requests.answer(open_packet(b"call.wav"))
    handle = next(iter(handles))
    upload = handles[handle]

    def broken_land(_upload: Upload) -> None:
        raise IndexError("a bug in landing")

    server.land = broken_land
    assert requests.answer(packet(CLOSE, 31, string(handle)))
    assert sent[-1][4] == 101 and struct.unpack_from(">II", sent[-1], 5) == (31, 4)
    assert b"Uncaught exception: a bug in landing" in sent[-1]
    assert "sftp_upload_request_failed" in caplog.text
    upload.discard()


def test_a_packet_too_short_for_a_request_id_is_left_to_asyncssh(setup):
    requests, _, handles, sent = setup
    assert not requests.answer(struct.pack(">IB", 1, OPEN))
    assert (sent, handles) == ([], {})
