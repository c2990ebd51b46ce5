"""Local storage: streaming writes, sha256 while writing, nothing left behind on failure."""

from __future__ import annotations

import hashlib

import pytest

from ingestd import errors
from ingestd.storage.local import LocalStorage


def test_put_stream_hashes_and_stores(tmp_path):
    storage = LocalStorage(tmp_path)
    chunks = [b"a" * 1000, b"b" * 5000]
    stored = storage.put_stream("c/x.wav", iter(chunks))
    assert stored.size == 6000
    assert stored.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    with storage.local_copy("c/x.wav") as path:
        assert path.read_bytes() == b"".join(chunks)


def test_failed_stream_leaves_nothing(tmp_path):
    storage = LocalStorage(tmp_path)

    def broken():
        yield b"partial"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        storage.put_stream("c/x.wav", broken())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_keys_cannot_leave_the_folder(tmp_path):
    with pytest.raises(errors.StoreError, match="leaves the storage folder"):
        LocalStorage(tmp_path / "s").put_stream("../escape", iter([b"x"]))
