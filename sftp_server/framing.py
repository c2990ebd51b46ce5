"""The client's SFTP byte stream cut into whole packets, and WRITEs that carry bytes after their
data repaired.

Whole packets are what the session needs to answer an upload's requests itself
(``upload_requests.py``) and to hand every other request to asyncssh whole (``session.py``).

The repair: the ``github.com/pkg/sftp`` client in rclone 1.60 (Debian 12's rclone) sends
``SSH_FXP_WRITE`` packets whose packet length counts more bytes than the handle, offset and data
string they declare: a file over 32 KiB goes out through its concurrent ``ReadFrom``, whose
packets are framed from the buffer rather than from the data. OpenSSH's ``sftp-server`` reads
the declared fields and ignores the rest; asyncssh checks the end of a version-3 WRITE and
answers ``SSH_FX_BAD_MESSAGE: Unexpected data at end of packet``, so rclone could not upload at
all. :class:`PacketFramer` cuts the extra bytes off such WRITE packets (the declared data is
exactly what the client meant; the files match byte for byte). Every other packet, and any
WRITE whose fields do not fit its length, passes unchanged, so asyncssh still judges malformed
input itself.
"""

from __future__ import annotations

from asyncssh.sftp import MAX_SFTP_PACKET_LEN

FXP_WRITE = 6
_LENGTH = 4  # every SFTP packet starts with its length as a uint32


class PacketFramer:
    """Cuts a client→server SFTP byte stream into whole packets, repairing over-long WRITEs.

    Only the start of a packet that the stream has not finished yet is held back. A packet
    longer than any SFTP server accepts switches to ``passthrough``: from then on the bytes are
    handed on as they come, for asyncssh to refuse (nothing after it is read anyway).
    """

    def __init__(self, max_packet: int = MAX_SFTP_PACKET_LEN) -> None:
        self.max_packet = max_packet
        self.trimmed_packets = 0
        self.trimmed_bytes = 0
        self.passthrough = False
        self._partial = bytearray()  # the start of a packet not complete yet

    def feed(self, data: bytes) -> list[bytes]:
        """The packets ``data`` completes, in order and repaired (raw bytes once
        ``passthrough``)."""
        if self.passthrough:
            return [data]
        view = memoryview(data)
        packets: list[bytes] = []
        pos = self._complete_partial(view, packets) if self._partial else 0
        end = len(data)
        # After _complete_partial either the view is used up or the held packet is complete.
        while end - pos >= _LENGTH:
            stop = pos + _LENGTH + int.from_bytes(view[pos:pos + _LENGTH], "big")
            if stop - pos - _LENGTH > self.max_packet:
                self.passthrough = True
                packets.append(bytes(view[pos:]))
                return packets
            if stop > end:
                break
            # The chunk that is exactly one packet (a small request) is passed on as it is.
            whole = data if pos == 0 and stop == end else bytes(view[pos:stop])
            packets.append(self._repaired(whole))
            pos = stop
        if pos < end:
            self._partial += view[pos:]
        return packets

    def flush(self) -> bytes:
        """Whatever is held back, unchanged (the stream ended in the middle of a packet)."""
        held = bytes(self._partial)
        self._partial.clear()
        return held

    def _complete_partial(self, view: memoryview, packets: list[bytes]) -> int:
        """Add to the held packet start what it still lacks from ``view``; returns how many
        bytes of ``view`` that took."""
        partial = self._partial
        taken = 0
        if len(partial) < _LENGTH:
            taken = min(_LENGTH - len(partial), len(view))
            partial += view[:taken]
            if len(partial) < _LENGTH:
                return taken
        length = int.from_bytes(partial[:_LENGTH], "big")
        if length > self.max_packet:
            self.passthrough = True
            packets.append(self.flush() + bytes(view[taken:]))
            return len(view)
        need = _LENGTH + length - len(partial)
        step = min(need, len(view) - taken)
        partial += view[taken:taken + step]
        taken += step
        if step == need:
            packets.append(self._repaired(self.flush()))
        return taken

    def _repaired(self, packet: bytes) -> bytes:
        if len(packet) <= _TYPE_AT or packet[_TYPE_AT] != FXP_WRITE:
            return packet
        end = _write_data_end(packet)
        if end is None or end == len(packet):
            return packet
        self.trimmed_packets += 1
        self.trimmed_bytes += len(packet) - end
        return (end - _LENGTH).to_bytes(_LENGTH, "big") + packet[_LENGTH:end]


# A packet's fields, counting its length: uint32 length, byte type, uint32 id, string handle,
# uint64 offset, string data (draft-ietf-secsh-filexfer-02) — each string a uint32 and bytes.
_TYPE_AT = _LENGTH
_HANDLE_AT = _LENGTH + 1 + 4


def _write_data_end(packet: bytes) -> int | None:
    """Where a WRITE packet's data string ends; None when its fields overrun the packet
    (asyncssh judges those)."""
    total = len(packet)
    if total < _HANDLE_AT + _LENGTH:
        return None
    data_at = _HANDLE_AT + _LENGTH + _uint32(packet, _HANDLE_AT) + 8
    if data_at + _LENGTH > total:
        return None
    end = data_at + _LENGTH + _uint32(packet, data_at)
    return end if end <= total else None


def _uint32(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at:at + _LENGTH], "big")
