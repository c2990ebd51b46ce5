"""PacketFramer: cutting the client's SFTP stream into whole packets, trimming WRITEs with
trailing bytes."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftp_server.framing import PacketFramer


def string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def write(data: bytes, trailing: bytes = b"", request_id: int = 7) -> bytes:
    body = struct.pack(">I", request_id) + string(b"h1") + struct.pack(">Q", 4096) + string(data)
    return packet(6, body + trailing)


INIT = packet(1, struct.pack(">I", 3))
CLOSE = packet(4, struct.pack(">I", 8) + string(b"h1"))


def feed_in_pieces(framer: PacketFramer, stream: bytes, size: int) -> list[bytes]:
    packets: list[bytes] = []
    for i in range(0, len(stream), size):
        packets += framer.feed(stream[i:i + size])
    return packets


def test_write_with_trailing_bytes_is_cut_to_its_declared_data():
    framer = PacketFramer()
    assert framer.feed(write(b"audio", trailing=b"\0" * 11)) == [write(b"audio")]
    assert (framer.trimmed_packets, framer.trimmed_bytes) == (1, 11)


@pytest.mark.parametrize("piece", [1, 3, 4, 5, 17, 4096, 100_000])
def test_stream_split_anywhere_comes_out_as_whole_repaired_packets(piece):
    data = bytes(range(256)) * 200  # 51 200 bytes: more than one channel packet
    stream = INIT + write(data, trailing=b"junk") + CLOSE + write(b"x")
    framer = PacketFramer()
    assert feed_in_pieces(framer, stream, piece) == [INIT, write(data), CLOSE, write(b"x")]
    assert framer.flush() == b""


def test_well_formed_packets_pass_unchanged():
    framer = PacketFramer()
    assert framer.feed(INIT + write(b"abc") + CLOSE) == [INIT, write(b"abc"), CLOSE]
    assert framer.trimmed_packets == 0


def test_a_chunk_that_is_one_packet_is_handed_on_as_it_is():
    chunk = write(b"abc")
    assert PacketFramer().feed(chunk)[0] is chunk  # no copy of the common small request


def test_only_write_packets_are_trimmed():
    other = packet(17, struct.pack(">I", 9) + string(b"/acme") + b"extra")  # STAT + junk
    assert PacketFramer().feed(other) == [other]  # asyncssh judges it, not us


@pytest.mark.parametrize("broken", [
    packet(6, struct.pack(">I", 1) + string(b"h1") + struct.pack(">Q", 0)
           + struct.pack(">I", 100) + b"short"),  # data longer than the packet
    packet(6, struct.pack(">I", 1) + struct.pack(">I", 999)),  # handle overruns the packet
    packet(6, b""),  # no fields at all
])
def test_malformed_write_passes_unchanged(broken):
    assert PacketFramer().feed(broken) == [broken]


def test_partial_packet_is_held_back_until_complete_and_flushed_raw():
    framer = PacketFramer()
    whole = write(b"abcdef")
    assert framer.feed(whole[:2]) == []
    assert framer.feed(whole[2:10]) == []
    assert framer.flush() == whole[:10]  # the stream ended mid-packet: asyncssh sees it as is


def test_oversized_length_switches_to_passthrough():
    framer = PacketFramer(max_packet=64)
    huge = struct.pack(">I", 10_000) + b"\x06" + b"a" * 20
    assert framer.feed(INIT + huge) == [INIT, huge]
    assert framer.passthrough
    assert framer.feed(write(b"x", trailing=b"junk")) == [write(b"x", trailing=b"junk")]


def test_oversized_length_split_across_chunks_switches_to_passthrough():
    framer = PacketFramer(max_packet=64)
    huge = struct.pack(">I", 10_000) + b"\x06" + b"a" * 20
    assert framer.feed(huge[:2]) == []
    assert framer.feed(huge[2:]) == [huge]
    assert framer.passthrough


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
def test_any_stream_cut_anywhere_comes_out_as_the_repaired_packets(packets, cuts):
    sent = b"".join(raw for raw, _ in packets)
    framer = PacketFramer()
    bounds = sorted({0, len(sent), *(c for c in cuts if c < len(sent))})
    out: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        out += framer.feed(sent[a:b])
    assert out == [repaired for _, repaired in packets]
    assert framer.flush() == b""
    assert framer.trimmed_bytes == len(sent) - sum(len(r) for _, r in packets)
