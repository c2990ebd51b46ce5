"""The SFTP session of a connection: asyncssh's own, with the upload requests answered beside it.

asyncssh has no hook between the channel and its SFTP packet parser, nor between its SFTP
replies and the channel. What it does offer is ``SSHServer.session_requested``, which may return
the session object that reads and writes the channel. :class:`SftpSession` is the session
asyncssh itself builds for ``listen(sftp_factory=…)`` (no shell, no exec, no scp; SFTP version
3) with its documented callbacks extended:

- the bytes the client sends are cut into whole packets by a
  :class:`~sftp_server.framing.PacketFramer` (which also repairs rclone 1.60's over-long
  WRITEs, ``framing.py``);
- while asyncssh has answered every request handed to it, an upload's OPEN, WRITE and CLOSE are
  answered at once by :class:`~sftp_server.upload_requests.UploadRequests`; every other packet
  goes to asyncssh's SFTP server, whole and in order. "Answered every request" is counted, not
  guessed: asyncssh writes each reply with one write to the channel, and the channel it writes
  to is ours;
- the replies go out through :class:`~sftp_server.replies.BatchedReplies` (one SSH packet per
  event-loop turn, ``replies.py``).

The SFTP server is started as asyncssh's ``session_started`` starts it (``run_sftp_server``),
keeping the handler it builds: its table of open files is where the upload handles live.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION, SFTPServerHandler
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

from sftp_server.framing import PacketFramer
from sftp_server.handler import LandingSftpServer
from sftp_server.replies import BatchedReplies
from sftp_server.upload_requests import UploadRequests

log = logging.getLogger(__name__)


class SftpSession(SSHServerStreamSession):
    """asyncssh's SFTP-only session, fed whole packets, its upload requests answered by
    :class:`UploadRequests`: for every well-formed client the server behaves exactly as the
    session ``listen(sftp_factory=…)`` builds."""

    def __init__(self, sftp_factory: asyncssh.SFTPServerFactory) -> None:
        super().__init__(None, sftp_factory, MIN_SFTP_VERSION, False)
        self._framer = PacketFramer()
        self._replies: BatchedReplies | None = None
        self._uploads: UploadRequests | None = None  # once asyncssh's SFTP server runs
        self._handed = 0  # requests handed to asyncssh
        self._username = ""

    def connection_made(self, chan: Any) -> None:
        self._username = str(chan.get_extra_info("username") or "")
        self._replies = BatchedReplies(chan)
        super().connection_made(self._replies)

    def session_started(self) -> None:
        # asyncssh's SSHServerStreamSession.session_started for the SFTP subsystem (the only
        # one this session accepts), keeping the handler.
        assert self._chan is not None and self._conn is not None
        reader = SSHReader[bytes](self, self._chan)
        writer = SSHWriter[bytes](self, self._chan)
        self._conn.create_task(self._serve(self._init_sftp_server(), reader, writer),
                               reader.logger)

    async def _serve(self, server: Any, reader: SSHReader[bytes],
                     writer: SSHWriter[bytes]) -> None:
        if inspect.isawaitable(server):
            server = await server
        handler = SFTPServerHandler(server, reader, writer, self._sftp_version)
        if isinstance(server, LandingSftpServer) and self._replies is not None:
            self._uploads = UploadRequests(server, handler._file_handles,
                                           handler._get_next_handle, self._replies.send)
        await handler.run()

    def data_received(self, data: Any, datatype: asyncssh.DataType) -> None:
        if datatype is not None or not isinstance(data, bytes):
            super().data_received(data, datatype)
            return
        framer = self._framer
        packets = framer.feed(data)
        for packet in packets:
            if (self._uploads is not None and not framer.passthrough
                    and self._replies is not None
                    and self._replies.replies_written == self._handed
                    and self._uploads.answer(packet)):
                continue
            self._handed += 1
            super().data_received(packet, None)

    def eof_received(self) -> bool:
        rest = self._framer.flush()
        if rest:
            super().data_received(rest, None)
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._framer.trimmed_packets:
            log.info("sftp_write_packets_trimmed username=%s packets=%d bytes=%d",
                     self._username, self._framer.trimmed_packets,
                     self._framer.trimmed_bytes)
        super().connection_lost(exc)
