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

Each WRITE request (32 KiB from OpenSSH ``sftp`` and paramiko) is one ``pwrite`` at its
offset, answered once the bytes are in the page cache; asyncssh's default handler made it a
``seek`` and a ``write``. Holding consecutive writes in memory and writing up to 1 MiB with one
``pwritev`` (sessions 5 and 6) cost more CPU than it saved: on session 7's bench VM the SFTP
process spent 6.2 ms per 1 MiB upload holding them against 3.8 ms writing each at once, and
300 x 1 MiB (no imports beside them) ran 50 % faster without holding (bench/RESULTS.md).
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


@dataclass(frozen=True)
class LandedFile:
    rel_path: str
    size: int
    mtime_ns: int


class Upload(io.FileIO):
    """The client's write handle: a fresh temporary file, readable and writable.

    A ``FileIO`` so asyncssh's default ``read``, ``fstat``, ``fsync`` and ``fstatvfs`` hooks
    work on it unchanged; the session writes through :meth:`write_at`.
    """

    def __init__(self, incoming: Path, rel_path: str, final_path: Path, username: str) -> None:
        self.temp_path = incoming / f"{secrets.token_hex(12)}{TEMP_SUFFIX}"
        super().__init__(self.temp_path, "xb+")
        self.rel_path = rel_path
        self.final_path = final_path
        self.username = username
        # The first write that failed (disk full, file too large): the bytes are not all
        # there, whatever the client does next, so the upload must not land.
        self.write_error: OSError | None = None

    def write_at(self, offset: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``offset`` (after a short write, the rest or the error)."""
        try:
            written = os.pwrite(self.fileno(), data, offset)
            while written < len(data):
                written += os.pwrite(self.fileno(), memoryview(data)[written:],
                                     offset + written)
        except OSError as exc:
            self.write_error = self.write_error or exc
            raise
        return len(data)

    def land(self) -> LandedFile:
        """Move the bytes to their landing path (blocking)."""
        try:
            info = os.fstat(self.fileno())  # the inode that lands: no path lookup
            self.close()
            try:
                os.replace(self.temp_path, self.final_path)
            except FileNotFoundError:  # its folder was removed during the upload
                self.final_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.temp_path, self.final_path)
        except BaseException:
            self.discard()
            raise
        return LandedFile(self.rel_path, info.st_size, info.st_mtime_ns)

    def discard(self) -> int:
        """Throw the bytes away; returns how many there were."""
        size = 0
        with contextlib.suppress(OSError):
            size = os.stat(self.temp_path).st_size
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
