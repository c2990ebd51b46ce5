"""Storage in a local folder: ``<root>/<key>``, written to a temp name, fsynced, renamed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ingestd import errors
from ingestd.storage import StoredObject, read_chunks


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise errors.StoreError(f"storage key {key!r} leaves the storage folder")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> StoredObject:
        target = self.path_of(key)
        temp = target.with_name(f".{target.name}.{os.getpid()}.writing")
        digest = hashlib.sha256()
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise errors.StoreError(f"could not store {key}: {exc.strerror or exc}") from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def put_file(self, key: str, source: Path) -> StoredObject:
        return self.put_stream(key, read_chunks(source))

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path_of(key)
        if not path.is_file():
            raise errors.StoreError(f"stored object {key} is missing")
        yield path

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
