"""An upload in progress: a temporary file in ``incoming/`` that becomes a landing file on close.

The temporary file lives on the same filesystem as the landing tree, so the final move is one
atomic ``os.replace``: the batch engine and the sweeper never see half a file under its final
name. Everything here is a quick syscall or two (open, rename, stat) on the local disk.

Landing does not fsync, like OpenSSH's sftp-server: the bytes are in the page cache under their
final name, which a crash of the daemon (``kill -9``) cannot lose. Durability is the import's
promise (SPEC: a file is ``COMPLETED`` once its bytes are durably in storage), and the stored
copy is fsynced before its call commits. A client that wants the landing copy on disk at once
sends ``fsync@openssh.com``, which asyncssh answers with an ``fsync`` of the open file. One fsync
per CLOSE cost more than the rest of a small upload's server work together.

Writes are gathered: clients send 32 KiB WRITE requests (OpenSSH ``sftp``, paramiko), a
``seek`` and a ``write`` each in asyncssh's default handler. Consecutive writes are held in
memory, up to :data:`WRITE_BUFFER_BYTES`, and go to the file in one ``pwritev`` (fewer
syscalls: on session 5's bench VM a 1 GiB upload took 3.8 s of server CPU instead of OpenSSH's
7.1 s, bench/RESULTS.md; machines differ, see there); anything that looks at the file (a read,
fstat, fsync, the close) writes them first. A write error then surfaces on a later WRITE or on
the CLOSE, which the client reports as failed, and the upload is discarded: a file is only
accepted when its CLOSE succeeds, so nothing the client was told is safe depends on the held
bytes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".upload"
# 32 WRITEs of 32 KiB per syscall; bounds the memory an open upload holds.
WRITE_BUFFER_BYTES = 1 << 20
MAX_HELD_WRITES = 64  # well under IOV_MAX (1024), for clients that send small writes


@dataclass(frozen=True)
class LandedFile:
    rel_path: str
    size: int
    mtime_ns: int


class Upload(io.FileIO):
    """The client's write handle: a fresh temporary file, readable and writable.

    A ``FileIO`` so asyncssh's default ``fstat`` and ``fstatvfs`` hooks work on it unchanged;
    the session writes through :meth:`write_at` and calls :meth:`flush` before a read or fsync.
    """

    def __init__(self, incoming: Path, rel_path: str, final_path: Path, username: str) -> None:
        self.temp_path = incoming / f"{secrets.token_hex(12)}{TEMP_SUFFIX}"
        super().__init__(self.temp_path, "xb+")
        self.rel_path = rel_path
        self.final_path = final_path
        self.username = username
        self._held: list[bytes] = []
        self._held_at = 0  # the file offset of the first held byte
        self._held_bytes = 0

    def write_at(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``: held while the writes run on, written in one go."""
        if self._held and offset != self._held_at + self._held_bytes:
            self.flush()
        if not self._held:
            self._held_at = offset
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= WRITE_BUFFER_BYTES or len(self._held) >= MAX_HELD_WRITES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Write the held bytes to the file (asyncssh's ``fstat`` calls this too)."""
        held, at, size = self._held, self._held_at, self._held_bytes
        if not held:
            return
        self._held, self._held_bytes = [], 0
        written = os.pwritev(self.fileno(), held, at)
        if written < size:  # a short write: the rest, or the error that stopped it
            rest = memoryview(b"".join(held))[written:]
            at += written
            while rest:
                written = os.pwrite(self.fileno(), rest, at)
                rest, at = rest[written:], at + written

    def land(self) -> LandedFile:
        """Move the bytes to their landing path (blocking)."""
        try:
            self.flush()
            self.close()
            try:
                os.replace(self.temp_path, self.final_path)
            except FileNotFoundError:  # its folder was removed during the upload
                self.final_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.temp_path, self.final_path)
        except BaseException:
            self.discard()
            raise
        info = os.stat(self.final_path)
        return LandedFile(self.rel_path, info.st_size, info.st_mtime_ns)

    def discard(self) -> int:
        """Throw the bytes away; returns how many there were."""
        size = self._held_bytes
        self._held, self._held_bytes = [], 0
        with contextlib.suppress(OSError):
            size += os.stat(self.temp_path).st_size
        super().close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)
        return size


def clear_incoming(incoming: Path) -> int:
    """Delete uploads left behind by a previous run (it stopped mid-transfer); returns count."""
    incoming.mkdir(parents=True, exist_ok=True)
    removed = 0
    for leftover in incoming.glob(f"*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    if removed:
        log.info("stale_uploads_removed count=%d path=%s", removed, incoming)
    return removed
