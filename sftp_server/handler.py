"""The SFTP session: asyncssh's per-operation hooks over the user's jail and the landing tree.

- Paths go through :class:`~sftp_server.jail.Jail`: the user sees only its campaign folders;
  refusals are raised there as SFTP statuses, filesystem errors are translated by asyncssh.
- Opening a file for writing starts an :class:`~sftp_server.upload.Upload` in ``incoming/``.
  A clean CLOSE from the client moves it into the landing tree and hands the change on for its
  row (:class:`~sftp_server.recording.ChangeSink`: the CLOSE is answered without waiting for the
  commit); a session that ends with the handle still open (dropped connection, killed client)
  discards it: it never becomes a landing file.
- Write opens always start a fresh file. Opening an *existing* file for writing without
  truncation (append, read-write, resume) is refused with permission denied: a partly rewritten
  recording is never what a telephony system means, and the client can upload it again.
- Renaming a file (``x.wav.filepart`` → ``x.wav``, posix semantics: an existing target is
  replaced) records it under its new name. Folders cannot be renamed.
- SETSTAT/FSETSTAT/LSETSTAT (chmod, times, size) are accepted and ignored. Links cannot be made
  and existing symlinks are never followed or listed.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh

from ingestd.landing import LandingChange
from sftp_server.jail import Jail, VirtualPath, normalise
from sftp_server.recording import ChangeSink
from sftp_server.upload import Upload

log = logging.getLogger(__name__)


class LandingSftpServer(asyncssh.SFTPServer):
    """One SFTP session of one user."""

    def __init__(self, chan: asyncssh.SSHServerChannel, jail: Jail, incoming: Path,
                 changes: ChangeSink) -> None:
        super().__init__(chan)
        self.jail = jail
        self.incoming = incoming
        self.changes = changes
        self.username = str(chan.get_extra_info("username") or "")
        self._uploads: set[Upload] = set()

    # Paths -------------------------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        return os.fsencode(self.jail.local(self.jail.resolve(path)))

    def reverse_map_path(self, path: bytes) -> bytes:
        return self.jail.to_virtual(Path(os.fsdecode(path))).client_path()

    def realpath(self, path: bytes) -> bytes:
        return normalise(path).client_path()

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        where = self.jail.resolve(path)
        here = _attrs(self.jail.local(where))
        yield asyncssh.SFTPName(b".", attrs=here)
        yield asyncssh.SFTPName(b"..", attrs=here)
        if where.is_root:
            for slug in sorted(self.jail.slugs):
                folder = self.jail.local(VirtualPath((slug,)))
                yield asyncssh.SFTPName(slug.encode("utf-8"), attrs=_attrs(folder))
            return
        with os.scandir(self.jail.local(where)) as entries:
            for entry in entries:
                if not entry.is_symlink():
                    attrs = asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False))
                    yield asyncssh.SFTPName(os.fsencode(entry.name), attrs=attrs)

    # Files -------------------------------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        # Not a coroutine: asyncssh awaits what it returns only when it is awaitable, and a
        # new file (nearly every OPEN) needs no wait.
        if not pflags & asyncssh.FXF_WRITE:
            local = self.jail.local(self.jail.resolve(path))
            # asyncssh closes it on CLOSE or at the end of the session
            return open(local, "rb", buffering=0,
                        opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW))
        where, final, exists = self._write_target(path, pflags)
        if exists:
            return self._reopen(where, final)
        return self._start_upload(where, final)

    def open_new_upload(self, path: bytes, pflags: int) -> Upload | None:
        """The write OPEN of a file that does not exist yet, at once (the fast path's entry);
        None when the path names an existing file (its reopen waits for a change). Refusals
        raise as in :meth:`open`."""
        where, final, exists = self._write_target(path, pflags)
        return None if exists else self._start_upload(where, final)

    def _write_target(self, path: bytes, pflags: int) -> tuple[VirtualPath, Path, bool]:
        """Where a write OPEN of ``path`` goes, and whether a file is there (refusals raise)."""
        where = self.jail.resolve_inside(path)
        final = self.jail.local(where)
        return where, final, _check_write_open(final, pflags)

    async def _reopen(self, where: VirtualPath, final: Path) -> Upload:
        # A waiting row for the old file must stop counting as complete before the client
        # starts to rewrite it, so this one change is awaited (recorded, or handed on in order
        # to whoever records it).
        await self.changes.submit(LandingChange("writing", where.rel_path), urgent=True)
        return self._start_upload(where, final)

    def _start_upload(self, where: VirtualPath, final: Path) -> Upload:
        upload = Upload(self.incoming, where.rel_path, final, self.username)
        self._uploads.add(upload)
        return upload

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if isinstance(file_obj, Upload):
            return file_obj.write_at(offset, data)
        return super().write(file_obj, offset, data)  # a read handle: the OS refuses it

    def close(self, file_obj: object) -> Any:
        if not isinstance(file_obj, Upload):
            return super().close(file_obj)
        if self._session_ending():
            self._uploads.discard(file_obj)
            return self._discard(file_obj)
        return self.land(file_obj)

    def _session_ending(self) -> bool:
        """True when asyncssh closes a handle because the session ended, not on a CLOSE request.

        asyncssh calls ``close()`` for both. ``channel.is_closing()`` alone does not tell them
        apart: a client that ends the channel with EOF (a killed ``sftp`` whose ``ssh`` sends
        EOF, paramiko closing its channel) leaves the send side open during the cleanup. The
        caller does tell: the handler's ``_process_close`` for a request, ``_cleanup`` at the
        end. Both are exercised by the tests, so a renamed method in a new asyncssh shows up
        there; for a caller we do not know, the channel state is the fallback.
        """
        caller = sys._getframe(2).f_code.co_name
        if caller == "_cleanup":
            return True
        if caller == "_process_close":
            return False
        return self.channel.is_closing()

    def land(self, upload: Upload) -> None:
        """The client's CLOSE of an upload: its bytes move into the landing tree and the
        change is handed on. A close, a rename and an fstat: cheaper on the loop than a trip
        to a worker thread."""
        self._uploads.discard(upload)
        if upload.write_error is not None:
            # The client was told its write failed; a CLOSE after that must not turn the
            # partial bytes into a landing file that looks complete.
            size = upload.discard()
            log.warning("upload_incomplete username=%s path=%s bytes=%d error=%s",
                        self.username, upload.rel_path, size, upload.write_error)
            raise asyncssh.SFTPFailure(
                f"the upload is incomplete and was discarded (a write failed: "
                f"{upload.write_error.strerror or upload.write_error}): upload it again")
        landed = upload.land()
        self._record(landed.rel_path, landed.size, landed.mtime_ns)

    def _record(self, rel_path: str, size: int, mtime_ns: int) -> None:
        self.changes.submit(LandingChange("landed", rel_path, size, mtime_ns))
        log.info("file_landed username=%s path=%s bytes=%d", self.username, rel_path, size)

    async def _discard(self, upload: Upload) -> None:
        size = upload.discard()
        log.info("upload_discarded username=%s path=%s bytes=%d",
                 self.username, upload.rel_path, size)
        if upload.final_path.is_file():
            # Opening the path marked its earlier, complete upload as being rewritten; that
            # file is untouched, so it counts as complete again.
            info = os.stat(upload.final_path)
            self._record(upload.rel_path, info.st_size, info.st_mtime_ns)

    async def exit(self) -> None:
        for upload in list(self._uploads):
            self._uploads.discard(upload)
            await self._discard(upload)

    # Changes to the tree -----------------------------------------------------------------

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        where = normalise(path)
        if where.is_campaign_folder and where.parts[0] in self.jail.slugs:
            raise asyncssh.SFTPFileAlreadyExists("the campaign folder already exists")
        os.mkdir(self.jail.local(self.jail.resolve_inside(path)), 0o755)

    def rmdir(self, path: bytes) -> None:
        os.rmdir(self.jail.local(self.jail.resolve_inside(path)))
        self.jail.forget_folders()

    async def remove(self, path: bytes) -> None:
        where = self.jail.resolve_inside(path)
        os.remove(self.jail.local(where))
        await self.changes.submit(LandingChange("removed", where.rel_path), urgent=True)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        # Replacing an existing target is what WinSCP and rclone expect of a plain rename too.
        await self.posix_rename(oldpath, newpath)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        old_where = self.jail.resolve_inside(oldpath)
        old = self.jail.local(old_where)
        where = self.jail.resolve_inside(newpath)
        new = self.jail.local(where)
        if stat.S_ISDIR(os.lstat(old).st_mode):
            raise asyncssh.SFTPPermissionDenied("folders cannot be renamed")
        if new.is_dir():
            raise asyncssh.SFTPFileIsADirectory("a folder of that name exists")
        os.replace(old, new)
        self.changes.submit(LandingChange("removed", old_where.rel_path))
        info = os.stat(new)
        self._record(where.rel_path, info.st_size, info.st_mtime_ns)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.jail.local(self.jail.resolve(path))  # accepted and ignored, but only in the jail

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.jail.local(self.jail.resolve(path))

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        return None

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links cannot be created")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links cannot be created")

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPPermissionDenied("symbolic links are not followed")


def _check_write_open(final: Path, pflags: int) -> bool:
    """Refuse write opens that cannot start a fresh upload of ``final``; True when a file of
    that name exists (the upload will replace it)."""
    try:
        mode: int | None = os.stat(final).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise asyncssh.SFTPFileIsADirectory("a folder of that name exists")
    if mode is None and not os.path.isdir(os.path.dirname(final)):
        raise asyncssh.SFTPNoSuchFile("the folder does not exist: create it first")
    exists = mode is not None
    if exists and pflags & asyncssh.FXF_EXCL:
        raise asyncssh.SFTPFileAlreadyExists("the file already exists")
    if not exists and not pflags & asyncssh.FXF_CREAT:
        raise asyncssh.SFTPNoSuchFile("no such file")
    if exists and not pflags & asyncssh.FXF_TRUNC:
        raise asyncssh.SFTPPermissionDenied(
            "changing an existing file in place is not supported: upload it again")
    return exists


def _attrs(local: Path) -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs.from_local(os.stat(local))
