"""Durable storage of accepted recordings.

``Storage`` is the seam; ``local.LocalStorage`` keeps files in a folder (the default) and S3 comes
later behind the same protocol. Writes are streaming: bytes are hashed while they are written and
a write is reported done only once the bytes are durable (fsync + atomic rename); a group of
files can be written and made durable together (``put_files``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingestd import config, errors

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class Storage(Protocol):
    def put_stream(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        """Write ``chunks`` under ``key``; return once durable. Nothing remains on failure."""
        ...

    def put_file(self, key: str, source: Path) -> StoredObject:
        """Copy a local file under ``key`` (streaming); return once durable."""
        ...

    def put_files(self, items: Sequence[tuple[str, Path]]
                  ) -> list[StoredObject | errors.StoreError]:
        """Store several local files, ``(key, source)`` each (a backend may take the source's
        bytes over without copying them, when the caller removes the source after storing:
        see ``LocalStorage.link_sources``), and return once the stored ones are durable: per
        item its object, or the StoreError that kept it from being stored (nothing of it
        remains). Cheaper than one ``put_file`` each: durability is paid for
        once per group where the backend allows it."""
        ...

    def local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the object's bytes for the duration of the block."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...


def build_storage(settings: config.Settings) -> Storage:
    """The storage backend the settings name."""
    if settings.storage.backend == "local":
        from ingestd.storage.local import LocalStorage

        # Imported landing copies that are deleted anyway can be stored by hard link.
        return LocalStorage(settings.storage_path,
                            link_sources=settings.sftp.after_import == "delete")
    raise errors.ConfigError(f"storage backend {settings.storage.backend!r} is not available yet")


def read_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterable[bytes]:
    """The bytes of a local file, chunk by chunk."""
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            yield chunk
