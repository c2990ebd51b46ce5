"""An upload's requests answered as they arrive: OPEN of a new file, WRITE and CLOSE.

asyncssh's SFTP server takes each request through its stream reader (a lock and a future per
read, a coroutine per request), decodes it into a packet object, logs it and builds its reply
in generic code. For the three requests that make up nearly every upload that is most of the
SFTP process's Python work on small files, and the servers' throughput on small files is that
work: on the bench VM OpenSSH spends 0.25 ms of server CPU per 4 KiB upload, bare asyncssh
0.65 ms. :class:`UploadRequests` answers those three straight from the packet bytes:

- ``OPEN`` for writing of a path with no file yet (with plain attributes: size, owner,
  permissions, times): the same :class:`~sftp_server.handler.LandingSftpServer` calls as
  asyncssh's path, and the handle goes into asyncssh's own table, so every later request on it
  (FSTAT, FSETSTAT, fsync, READ, a CLOSE asyncssh answers) finds it;
- ``WRITE`` to an upload's handle: one ``pwrite``; an error (disk full) is answered with
  asyncssh's status for it, and marks the upload incomplete;
- ``CLOSE`` of an upload's handle: the file lands (``LandingSftpServer.land``), or an
  incomplete upload is discarded and the client told so.

Anything else, or anything unusual about one of these (a reopen of an existing file, a
refusal, fields that do not fit the packet), is left to asyncssh untouched:
:meth:`UploadRequests.answer` returns False having changed nothing, and asyncssh does the
request itself, refusing it in its own words. That is decided before anything is done (an
overrunning field is met while parsing); an unexpected error once a request has acted is
answered as asyncssh answers one (``Failure``, "Uncaught exception: …") and logged, never handed
on to be done twice. The session (``session.py``) asks only while asyncssh has answered every
request handed to it, so replies keep the requests' order.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable

import asyncssh
from asyncssh.constants import (
    FILEXFER_ATTR_ACMODTIME,
    FILEXFER_ATTR_PERMISSIONS,
    FILEXFER_ATTR_SIZE,
    FILEXFER_ATTR_UIDGID,
    FX_FAILURE,
    FX_FILE_ALREADY_EXISTS,
    FX_FILE_IS_A_DIRECTORY,
    FX_NO_SPACE_ON_FILESYSTEM,
    FX_NO_SUCH_FILE,
    FX_NOT_A_DIRECTORY,
    FX_OK,
    FX_PERMISSION_DENIED,
    FX_QUOTA_EXCEEDED,
    FX_WRITE_PROTECT,
    FXF_WRITE,
    FXP_CLOSE,
    FXP_HANDLE,
    FXP_OPEN,
    FXP_STATUS,
    FXP_WRITE,
)

from sftp_server.handler import LandingSftpServer
from sftp_server.upload import Upload

log = logging.getLogger(__name__)

SFTP_VERSION = 3  # the session serves version 3 only (MIN_SFTP_VERSION)
# The fixed-size attributes an OPEN may carry, and their sizes; others go to asyncssh.
_ATTR_SIZES = ((FILEXFER_ATTR_SIZE, 8), (FILEXFER_ATTR_UIDGID, 8),
               (FILEXFER_ATTR_PERMISSIONS, 4), (FILEXFER_ATTR_ACMODTIME, 8))
_PLAIN_ATTRS = sum(bit for bit, _ in _ATTR_SIZES)
# Where the fields start: uint32 length, byte type, uint32 request id.
_FIELDS_AT = 9
_UINT32 = struct.Struct(">I")
_OFFSET_AND_SIZE = struct.Struct(">QI")  # a WRITE's offset and data length
_FLAGS = struct.Struct(">II")  # an OPEN's pflags and attribute flags
_STATUS_OK = struct.Struct(">IBIIII")  # length, type, id, code, empty message, empty language
# The statuses asyncssh gives filesystem errors (SFTPServerHandler._process_packet).
_OS_ERROR_CODES = {
    errno.ENOENT: FX_NO_SUCH_FILE, errno.EACCES: FX_PERMISSION_DENIED,
    errno.EEXIST: FX_FILE_ALREADY_EXISTS, errno.EROFS: FX_WRITE_PROTECT,
    errno.ENOSPC: FX_NO_SPACE_ON_FILESYSTEM, errno.EDQUOT: FX_QUOTA_EXCEEDED,
    errno.ENOTDIR: FX_NOT_A_DIRECTORY, errno.EISDIR: FX_FILE_IS_A_DIRECTORY,
}


class UploadRequests:
    """Answers OPEN/WRITE/CLOSE of uploads for one session; see the module's account."""

    def __init__(self, server: LandingSftpServer, handles: dict[bytes, object],
                 new_handle: Callable[[], bytes], send: Callable[[bytes], None]) -> None:
        self.server = server
        self.handles = handles  # asyncssh's table of the session's open files
        self.new_handle = new_handle
        self.send = send

    def answer(self, packet: bytes) -> bool:
        """Answer ``packet`` (one whole request) when it is an upload request this path
        takes; False, with nothing done, when asyncssh must."""
        if len(packet) <= _FIELDS_AT:
            return False
        kind = packet[4]
        if kind == FXP_WRITE:
            parse, act = _write_request, self._write
        elif kind == FXP_OPEN:
            parse, act = _open_request, self._open
        elif kind == FXP_CLOSE:
            parse, act = _close_request, self._close
        else:
            return False
        # Only the parsing may meet fields that overrun the packet (asyncssh's to judge);
        # an error past that point has acted, so it is answered here and never handed on.
        try:
            request = parse(packet)
        except (IndexError, struct.error):
            return False
        if request is None:
            return False
        try:
            return act(packet, *request)
        except Exception as exc:  # a bug: answered as asyncssh answers one, and logged loudly
            log.exception("sftp_upload_request_failed kind=%d", kind)
            self._status(packet, asyncssh.SFTPFailure(
                f"Uncaught exception: {exc}").encode(SFTP_VERSION))
            return True

    def _write(self, packet: bytes, handle: bytes, offset: int, data: memoryview) -> bool:
        upload = self.handles.get(handle)
        if type(upload) is not Upload:
            return False
        try:
            upload.write_at(offset, data)
        except OSError as exc:  # the upload is marked incomplete: its CLOSE will not land it
            self._status(packet, _os_error_status(exc))
        else:
            self._ok(packet)
        return True

    def _open(self, packet: bytes, path: bytes, pflags: int) -> bool:
        try:
            upload = self.server.open_new_upload(path, pflags)
        except (asyncssh.SFTPError, OSError):
            return False  # nothing was made: asyncssh refuses it again, in its own words
        if upload is None:
            return False  # an existing file: its reopen waits for a change
        handle = self.new_handle()
        self.handles[handle] = upload
        self.send(struct.pack(">IBII", 9 + len(handle), FXP_HANDLE, _request_id(packet),
                              len(handle)) + handle)
        return True

    def _close(self, packet: bytes, handle: bytes) -> bool:
        upload = self.handles.get(handle)
        if type(upload) is not Upload:
            return False
        del self.handles[handle]
        try:
            self.server.land(upload)
        except asyncssh.SFTPError as exc:
            self._status(packet, exc.encode(SFTP_VERSION))
        except OSError as exc:  # the upload was discarded (land); the client hears why
            self._status(packet, _os_error_status(exc))
        else:
            self._ok(packet)
        return True

    def _ok(self, packet: bytes) -> None:
        self.send(_STATUS_OK.pack(17, FXP_STATUS, _request_id(packet), FX_OK, 0, 0))

    def _status(self, packet: bytes, body: bytes) -> None:
        self.send(struct.pack(">IBI", 5 + len(body), FXP_STATUS, _request_id(packet)) + body)


def _write_request(packet: bytes) -> tuple[bytes, int, memoryview] | None:
    """A WRITE's handle, offset and data; None when its data length is not the packet's rest."""
    handle, at = _string(packet, _FIELDS_AT)
    offset, size = _OFFSET_AND_SIZE.unpack_from(packet, at)
    data_at = at + _OFFSET_AND_SIZE.size
    if data_at + size != len(packet):
        return None
    return handle, offset, memoryview(packet)[data_at:]


def _open_request(packet: bytes) -> tuple[bytes, int] | None:
    """An OPEN's path and flags; None unless it opens for writing with plain attributes that
    end the packet."""
    path, at = _string(packet, _FIELDS_AT)
    pflags, attr_flags = _FLAGS.unpack_from(packet, at)
    if not pflags & FXF_WRITE or attr_flags & ~_PLAIN_ATTRS:
        return None
    end = at + _FLAGS.size + sum(size for bit, size in _ATTR_SIZES if attr_flags & bit)
    if end != len(packet):
        return None
    return path, pflags


def _close_request(packet: bytes) -> tuple[bytes] | None:
    """A CLOSE's handle; None when anything follows it."""
    handle, at = _string(packet, _FIELDS_AT)
    return (handle,) if at == len(packet) else None


def _os_error_status(exc: OSError) -> bytes:
    """The STATUS body asyncssh gives a filesystem error (its code, the OS's words)."""
    code = _OS_ERROR_CODES.get(exc.errno or 0, FX_FAILURE)
    return asyncssh.SFTPError(code, exc.strerror or str(exc)).encode(SFTP_VERSION)


def _request_id(packet: bytes) -> int:
    return _UINT32.unpack_from(packet, 5)[0]


def _string(packet: bytes, at: int) -> tuple[bytes, int]:
    """The string at ``at`` and where the next field starts (IndexError past the end)."""
    (size,) = _UINT32.unpack_from(packet, at)
    end = at + 4 + size
    if end > len(packet):
        raise IndexError("string overruns the packet")
    return packet[at + 4:end], end
