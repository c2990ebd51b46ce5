"""The SFTP replies of one event-loop turn, sent to the client as one SSH packet.

asyncssh's SFTP server writes each reply (a 28-byte STATUS per WRITE, a HANDLE per OPEN) to
its channel at once, and the channel makes each one its own SSH packet: encrypted, framed and
handed to the socket on its own. A client such as OpenSSH ``sftp`` keeps up to 64 WRITEs of
32 KiB in flight, and the server answers the ones that arrived together in one turn of the
loop, so a 1 MiB upload cost 32 packets and 32 socket writes back. OpenSSH's ``sftp-server``
writes its replies into a pipe that ``sshd`` reads in bulk, so they leave in a few packets.

:class:`BatchedReplies` stands between the session and its channel: plain data written during a
turn is held and written to the channel once, at the end of the turn (``call_soon``). Nothing
waits longer than that turn; anything else the session does with the channel (EOF, close,
extended data) first writes what is held, so the order on the wire is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class BatchedReplies:
    """A channel whose plain writes within one loop turn go out as one write.

    It also counts asyncssh's replies (``replies_written``): asyncssh's SFTP server writes
    each reply with one ``write``, so the session knows when asyncssh has answered every
    request handed to it (``session.py``). The session's own replies go through :meth:`send`,
    which is not counted.
    """

    def __init__(self, chan: Any) -> None:
        self._chan = chan
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_scheduled = False
        self.replies_written = 0

    def write(self, data: bytes, datatype: Any = None) -> None:
        """Hold ``data`` until the end of this loop turn (extended data goes at once, after
        what is held)."""
        if datatype is not None:
            self.flush()
            self._chan.write(data, datatype)
            return
        self.replies_written += 1
        self.send(data)

    def send(self, data: bytes) -> None:
        """Hold a reply the session made itself, in order with asyncssh's."""
        self._held.append(data)
        self._held_bytes += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def writelines(self, list_of_data: Iterable[bytes], datatype: Any = None) -> None:
        for data in list_of_data:
            self.write(data, datatype)

    def flush(self) -> None:
        """Write what is held to the channel; dropped if the channel stopped sending (as
        asyncssh drops a reply to a closing channel)."""
        self._flush_scheduled = False
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if not self._chan.is_closing():
            self._chan.write(data)

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._chan.get_write_buffer_size()

    def write_eof(self) -> None:
        self.flush()
        self._chan.write_eof()

    def close(self) -> None:
        self.flush()
        self._chan.close()

    def exit(self, status: int) -> None:
        self.flush()
        self._chan.exit(status)

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, flow control, closing state) is the channel's own.
        return getattr(self._chan, name)
