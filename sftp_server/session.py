"""The SFTP session of a connection: asyncssh's own, with two things between it and its channel.

asyncssh has no hook between the channel and its SFTP packet parser, nor between its SFTP
replies and the channel. What it does offer is ``SSHServer.session_requested``, which may return
the session object that reads and writes the channel. :class:`SftpSession` is the session
asyncssh itself builds for ``listen(sftp_factory=…)`` (no shell, no exec, no scp; SFTP version
3) with its documented callbacks extended:

- the bytes the client sends pass through a :class:`~sftp_server.framing.WriteTrimmer`
  (rclone 1.60's over-long WRITE packets, ``framing.py``);
- the replies go out through :class:`~sftp_server.replies.BatchedReplies` (one SSH packet per
  event-loop turn, ``replies.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

from sftp_server.framing import WriteTrimmer
from sftp_server.replies import BatchedReplies

log = logging.getLogger(__name__)


class SftpSession(SSHServerStreamSession):
    """asyncssh's SFTP-only session, fed through a :class:`WriteTrimmer`, its replies sent
    through :class:`BatchedReplies`: for every well-formed client the server behaves exactly
    as the session ``listen(sftp_factory=…)`` builds."""

    def __init__(self, sftp_factory: asyncssh.SFTPServerFactory) -> None:
        super().__init__(None, sftp_factory, MIN_SFTP_VERSION, False)
        self._trimmer = WriteTrimmer()
        self._username = ""

    def connection_made(self, chan: Any) -> None:
        self._username = str(chan.get_extra_info("username") or "")
        super().connection_made(BatchedReplies(chan))

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
