"""WriteTrimmer: re-framing the client's SFTP stream and trimming WRITEs with trailing bytes."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftp_server.framing import WriteTrimmer


def string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def write(data: bytes, trailing: bytes = b"", request_id: int = 7) -> bytes:
    body = struct.pack(">I", request_id) + string(b"h1") + struct.pack(">Q", 4096) + string(data)
    return packet(6, body + trailing)


INIT = packet(1, struct.pack(">I", 3))
CLOSE = packet(4, struct.pack(">I", 8) + string(b"h1"))


def feed_in_pieces(trimmer: WriteTrimmer, stream: bytes, size: int) -> bytes:
    out = b"".join(trimmer.feed(stream[i:i + size]) for i in range(0, len(stream), size))
    return out + trimmer.flush()


def test_write_with_trailing_bytes_is_cut_to_its_declared_data():
    trimmer = WriteTrimmer()
    assert trimmer.feed(write(b"audio", trailing=b"\0" * 11)) == write(b"audio")
    assert (trimmer.trimmed_packets, trimmer.trimmed_bytes) == (1, 11)


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 17, 4096])
def test_stream_split_anywhere_comes_out_whole_and_repaired(piece):
    data = bytes(range(256)) * 200  # 51 200 bytes: more than one channel packet
    stream = INIT + write(data, trailing=b"junk") + CLOSE + write(b"x")
    out = feed_in_pieces(WriteTrimmer(), stream, piece)
    assert out == INIT + write(data) + CLOSE + write(b"x")


def test_well_formed_packets_pass_unchanged():
    stream = INIT + write(b"abc") + CLOSE
    trimmer = WriteTrimmer()
    assert trimmer.feed(stream) == stream
    assert trimmer.trimmed_packets == 0


def test_only_write_packets_are_trimmed():
    other = packet(17, struct.pack(">I", 9) + string(b"/acme") + b"extra")  # STAT + junk
    assert WriteTrimmer().feed(other) == other  # asyncssh judges it, not us


@pytest.mark.parametrize("broken", [
    packet(6, struct.pack(">I", 1) + string(b"h1") + struct.pack(">Q", 0)
           + struct.pack(">I", 100) + b"short"),  # data longer than the packet
    packet(6, struct.pack(">I", 1) + struct.pack(">I", 999)),  # handle overruns the packet
    packet(6, b""),  # no fields at all
])
def test_malformed_write_passes_unchanged(broken):
    assert WriteTrimmer().feed(broken) == broken


def test_partial_packet_is_held_back_until_complete_and_flushed_raw():
    trimmer = WriteTrimmer()
    whole = write(b"abcdef")
    assert trimmer.feed(whole[:10]) == b""
    assert trimmer.flush() == whole[:10]  # the stream ended mid-packet: asyncssh sees it as is


def test_oversized_length_switches_to_passthrough():
    trimmer = WriteTrimmer(max_packet=64)
    huge = struct.pack(">I", 10_000) + b"\x06" + b"a" * 20
    assert trimmer.feed(huge) == huge
    assert trimmer.feed(write(b"x", trailing=b"junk")) == write(b"x", trailing=b"junk")


def test_chunks_of_well_formed_packets_are_handed_on_without_a_copy():
    # 32 KiB WRITEs arrive split over SSH channel packets; none needs repair, so every chunk is
    # passed on as the very object received (the copies were 6 % of the SFTP process's CPU).
    stream = INIT + b"".join(write(bytes(32768), request_id=n) for n in range(4)) + CLOSE
    trimmer = WriteTrimmer()
    chunks = [stream[i:i + 32768] for i in range(0, len(stream), 32768)]
    assert all(trimmer.feed(chunk) is chunk for chunk in chunks)


@st.composite
def sftp_packets(draw) -> tuple[bytes, bytes]:
    """One client packet as sent, and as asyncssh must receive it."""
    kind = draw(st.sampled_from(["write", "write_trailing", "other"]))
    if kind == "other":
        raw = packet(draw(st.sampled_from([1, 3, 4, 17])), draw(st.binary(max_size=40)))
        return raw, raw
    handle, data = draw(st.binary(max_size=8)), draw(st.binary(max_size=300))
    body = struct.pack(">I", 5) + string(handle) + struct.pack(">Q", 0) + string(data)
    trailing = draw(st.binary(min_size=1, max_size=30)) if kind == "write_trailing" else b""
    return packet(6, body + trailing), packet(6, body)


@settings(max_examples=300, deadline=None)
@given(packets=st.lists(sftp_packets(), max_size=8), cuts=st.lists(st.integers(0, 3000)))
def test_any_stream_cut_anywhere_comes_out_repaired(packets, cuts):
    sent = b"".join(raw for raw, _ in packets)
    expected = b"".join(repaired for _, repaired in packets)
    trimmer = WriteTrimmer()
    bounds = sorted({0, len(sent), *(c for c in cuts if c < len(sent))})
    out = b"".join(trimmer.feed(sent[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + trimmer.flush() == expected
    assert trimmer.trimmed_bytes == len(sent) - len(expected)
