"""Repair of the client's SFTP byte stream: WRITE packets that carry bytes after their data.

The ``github.com/pkg/sftp`` client in rclone 1.60 (Debian 12's rclone) sends ``SSH_FXP_WRITE``
packets whose packet length counts more bytes than the handle, offset and data string they
declare: a file over 32 KiB goes out through its concurrent ``ReadFrom``, whose packets are
framed from the buffer rather than from the data. OpenSSH's ``sftp-server`` reads the declared
fields and ignores the rest; asyncssh checks the end of a version-3 WRITE and answers
``SSH_FX_BAD_MESSAGE: Unexpected data at end of packet``, so rclone cannot upload at all.

An ``SFTPServer`` only sees decoded requests, so the repair happens on the bytes, before
asyncssh parses them: the session (:class:`~sftp_server.session.SftpSession`) passes what the
channel receives through a :class:`WriteTrimmer`, which re-frames the stream and cuts the extra
bytes off such WRITE packets (the declared data is exactly what the client meant; the files
match byte for byte). Every other packet, and anything it cannot parse, passes unchanged, so
asyncssh still judges malformed input itself.
"""

from __future__ import annotations

from asyncssh.sftp import MAX_SFTP_PACKET_LEN

FXP_WRITE = 6
_LENGTH = 4  # every SFTP packet starts with its length as a uint32


class WriteTrimmer:
    """Re-frames a client→server SFTP byte stream and trims over-long WRITE packets.

    Streaming: only the first bytes of each packet (up to a WRITE's data length) are read, and
    a chunk whose packets all pass unchanged is handed on as the same object, without a copy.
    Only the start of a packet that a chunk cuts before its fields could be read is held back.
    """

    def __init__(self, max_packet: int = MAX_SFTP_PACKET_LEN) -> None:
        self.max_packet = max_packet
        self.trimmed_packets = 0
        self.trimmed_bytes = 0
        self._head = bytearray()  # the start of a packet not yet decided on
        self._keep = 0  # bytes of the current packet still to pass on
        self._drop = 0  # bytes of the current packet to cut after those
        self._passthrough = False

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` to pass on, repaired; the undecided start of a packet is held
        back."""
        if self._passthrough:
            return data
        view = memoryview(data)
        pieces: list[bytes | memoryview] = []
        run = 0  # where the current stretch of unchanged input bytes began
        pos, end = 0, len(data)
        while pos < end:
            if self._keep:
                step = min(self._keep, end - pos)
                self._keep -= step
                pos += step
                continue
            if self._drop:
                pieces.append(view[run:pos])
                step = min(self._drop, end - pos)
                self._drop -= step
                self.trimmed_bytes += step
                pos = run = pos + step
                continue
            # The start of a packet: decide on it from this chunk if it holds the fields,
            # else gather them in ``_head``.
            if self._head:
                pieces.append(view[run:pos])
                pos = run = self._gather(view, pos, end)
                head = bytes(self._head)
            else:
                head = view[pos:]
            try:
                decision = self._decide(head)
            except _TooLong:
                # Not ours to judge: asyncssh refuses it, and nothing after it is read anyway.
                self._passthrough = True
                pieces += [view[run:pos], self._take_head(), view[pos:]]
                return b"".join(pieces)
            if decision is None:  # the chunk ends inside the fields
                pieces.append(view[run:pos])
                self._head += view[pos:]
                pos = run = end
                continue
            keep, drop = decision
            if self._head:
                held = self._take_head()
                if drop:
                    held = _with_length(held, keep)
                pieces.append(held)
                self._keep, self._drop = keep - len(held), drop
            elif drop:
                pieces += [view[run:pos], (keep - _LENGTH).to_bytes(_LENGTH, "big")]
                pos = run = pos + _LENGTH
                self._keep, self._drop = keep - _LENGTH, drop
            else:
                self._keep = keep
            if drop:
                self.trimmed_packets += 1
        if run == 0 and not pieces:
            return data  # every byte passes unchanged: no copy
        pieces.append(view[run:end])
        return b"".join(pieces)

    def flush(self) -> bytes:
        """Whatever is held back, unchanged (the stream ended in the middle of a packet)."""
        return self._take_head()

    def _gather(self, view: memoryview, pos: int, end: int) -> int:
        """Add to ``_head`` what the decision on its packet still needs; the new position."""
        while pos < end:
            need = _fields_needed(self._head)
            if need <= len(self._head):
                break
            step = min(need - len(self._head), end - pos)
            self._head += view[pos:pos + step]
            pos += step
        return pos

    def _take_head(self) -> bytes:
        head = bytes(self._head)
        self._head.clear()
        return head

    def _decide(self, head: bytes | memoryview) -> tuple[int, int] | None:
        """(bytes to pass on, bytes to cut) of the packet ``head`` starts, counting its length
        field; None while the fields that decide are not all there."""
        if len(head) < _LENGTH:
            return None
        length = _uint32(head, 0)
        if length > self.max_packet:
            raise _TooLong
        if len(head) < _fields_needed(head):
            return None
        total = _LENGTH + length
        end = _write_data_end(head, total)
        if end is None or end == total:
            return total, 0
        return end, total - end


class _TooLong(Exception):
    """A packet longer than any asyncssh accepts."""


# A packet's fields, counting its length: uint32 length, byte type, uint32 id, string handle,
# uint64 offset, string data (draft-ietf-secsh-filexfer-02) — each string a uint32 and bytes.
_TYPE_AT = _LENGTH
_HANDLE_AT = _LENGTH + 1 + 4


def _fields_needed(head: bytes | memoryview) -> int:
    """How many bytes of the packet must be read to decide on it (at most all of it)."""
    if len(head) < _LENGTH:
        return _LENGTH
    total = _LENGTH + _uint32(head, 0)
    if len(head) <= _TYPE_AT or head[_TYPE_AT] != FXP_WRITE:
        return min(total, _TYPE_AT + 1)
    if len(head) < _HANDLE_AT + _LENGTH:
        return min(total, _HANDLE_AT + _LENGTH)
    data_at = _HANDLE_AT + _LENGTH + _uint32(head, _HANDLE_AT) + 8
    return min(total, data_at + _LENGTH)


def _write_data_end(head: bytes | memoryview, total: int) -> int | None:
    """Where a WRITE packet's data string ends; None for other packets or fields that overrun
    the packet (asyncssh judges those)."""
    if total <= _TYPE_AT or head[_TYPE_AT] != FXP_WRITE or total < _HANDLE_AT + _LENGTH:
        return None
    data_at = _HANDLE_AT + _LENGTH + _uint32(head, _HANDLE_AT) + 8
    if data_at + _LENGTH > total:
        return None
    end = data_at + _LENGTH + _uint32(head, data_at)
    return end if end <= total else None


def _uint32(buf: bytes | memoryview, at: int) -> int:
    return int.from_bytes(buf[at:at + _LENGTH], "big")


def _with_length(head: bytes, keep: int) -> bytes:
    """``head`` with its length field set for a packet cut to ``keep`` bytes."""
    return (keep - _LENGTH).to_bytes(_LENGTH, "big") + head[_LENGTH:]
