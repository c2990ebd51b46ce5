"""Repair of the client's SFTP byte stream: WRITE packets that carry bytes after their data.

The ``github.com/pkg/sftp`` client in rclone 1.60 (Debian 12's rclone) sends ``SSH_FXP_WRITE``
packets whose packet length counts more bytes than the handle, offset and data string they
declare: a file over 32 KiB goes out through its concurrent ``ReadFrom``, whose packets are
framed from the buffer rather than from the data. OpenSSH's ``sftp-server`` reads the declared
fields and ignores the rest; asyncssh checks the end of a version-3 WRITE and answers
``SSH_FX_BAD_MESSAGE: Unexpected data at end of packet``, so rclone cannot upload at all.

asyncssh has no hook between the channel and its SFTP packet parser: an ``SFTPServer`` only
sees decoded requests. What it does offer is ``SSHServer.session_requested``, which may return
the session object that receives the channel's bytes. :class:`TrimmingSftpSession` is the
session asyncssh itself builds for ``listen(sftp_factory=…)`` with one documented callback,
``data_received``, overridden: the bytes pass through a :class:`WriteTrimmer` that re-frames
the stream and cuts the extra bytes off such WRITE packets (the declared data is exactly what
the client meant; the files match byte for byte). Every other packet, and anything it cannot
parse, passes unchanged, so asyncssh still judges malformed input itself.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh
from asyncssh.sftp import MAX_SFTP_PACKET_LEN, MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

log = logging.getLogger(__name__)

FXP_WRITE = 6
_LENGTH = 4  # every SFTP packet starts with its length as a uint32


class WriteTrimmer:
    """Re-frames a client→server SFTP byte stream and trims over-long WRITE packets."""

    def __init__(self, max_packet: int = MAX_SFTP_PACKET_LEN) -> None:
        self.max_packet = max_packet
        self.trimmed_packets = 0
        self.trimmed_bytes = 0
        self._pending = bytearray()
        self._passthrough = False

    def feed(self, data: bytes) -> bytes:
        """The whole packets completed by ``data``, repaired; a partial packet is held back."""
        if self._passthrough:
            return data
        self._pending += data
        out = bytearray()
        while len(self._pending) >= _LENGTH:
            length = int.from_bytes(self._pending[:_LENGTH], "big")
            if length > self.max_packet:
                # Not ours to judge: asyncssh refuses it, and nothing after it is read anyway.
                self._passthrough = True
                out += self.flush()
                break
            if len(self._pending) < _LENGTH + length:
                break
            packet = self._trim(bytes(self._pending[_LENGTH:_LENGTH + length]))
            del self._pending[:_LENGTH + length]
            out += len(packet).to_bytes(_LENGTH, "big") + packet
        return bytes(out)

    def flush(self) -> bytes:
        """Whatever is held back, unchanged (the stream ended in the middle of a packet)."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest

    def _trim(self, packet: bytes) -> bytes:
        end = _write_data_end(packet)
        if end is None or end == len(packet):
            return packet
        self.trimmed_packets += 1
        self.trimmed_bytes += len(packet) - end
        return packet[:end]


def _write_data_end(packet: bytes) -> int | None:
    """Where a WRITE packet's data string ends; None for other packets or fields that overrun.

    Layout (draft-ietf-secsh-filexfer-02): byte type, uint32 id, string handle, uint64 offset,
    string data — each string a uint32 length and its bytes.
    """
    if not packet or packet[0] != FXP_WRITE:
        return None
    handle_at = 1 + 4
    offset_at = handle_at + _LENGTH + _uint32(packet, handle_at)
    data_at = offset_at + 8
    if data_at + _LENGTH > len(packet):
        return None
    end = data_at + _LENGTH + _uint32(packet, data_at)
    return end if end <= len(packet) else None


def _uint32(packet: bytes, at: int) -> int:
    return int.from_bytes(packet[at:at + _LENGTH], "big")


class TrimmingSftpSession(SSHServerStreamSession):
    """asyncssh's SFTP-only session, fed through a :class:`WriteTrimmer`.

    Built as ``listen(sftp_factory=…)`` builds it (no shell, no exec, no scp; SFTP version 3),
    so the SFTP server behaves exactly as before for every well-formed client.
    """

    def __init__(self, sftp_factory: asyncssh.SFTPServerFactory) -> None:
        super().__init__(None, sftp_factory, MIN_SFTP_VERSION, False)
        self._trimmer = WriteTrimmer()
        self._username = ""

    def connection_made(self, chan: Any) -> None:
        self._username = str(chan.get_extra_info("username") or "")
        super().connection_made(chan)

    def data_received(self, data: Any, datatype: asyncssh.DataType) -> None:
        if datatype is None and isinstance(data, bytes):
            data = self._trimmer.feed(data)
        if data:
            super().data_received(data, datatype)

    def eof_received(self) -> bool:
        rest = self._trimmer.flush()
        if rest:
            super().data_received(rest, None)
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._trimmer.trimmed_packets:
            log.info("sftp_write_packets_trimmed username=%s packets=%d bytes=%d",
                     self._username, self._trimmer.trimmed_packets,
                     self._trimmer.trimmed_bytes)
        super().connection_lost(exc)
