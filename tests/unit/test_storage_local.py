"""Local storage: streaming writes, sha256 while writing, nothing left behind on failure."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

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


@pytest.mark.parametrize("link_sources", [False, True])
def test_put_files_stores_a_group_and_fails_only_the_item_that_cannot_be_stored(
        tmp_path, link_sources):
    sources = tmp_path / "in"
    sources.mkdir()
    (sources / "a.wav").write_bytes(b"a" * 3000)
    (sources / "c.wav").write_bytes(b"c" * 5000)
    storage = LocalStorage(tmp_path / "s", link_sources=link_sources)
    stored = storage.put_files([("cmp/call_a/a.wav", sources / "a.wav"),
                                ("cmp/call_b/b.wav", sources / "missing.wav"),
                                ("cmp/call_c/c.wav", sources / "c.wav")])
    assert [type(s).__name__ for s in stored] == ["StoredObject", "StoreError",
                                                  "StoredObject"]
    assert stored[0].sha256 == hashlib.sha256(b"a" * 3000).hexdigest()
    assert stored[2].size == 5000
    with storage.local_copy("cmp/call_c/c.wav") as path:
        assert path.read_bytes() == b"c" * 5000
    kept = sorted(p.relative_to(tmp_path / "s").as_posix()
                  for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert kept == ["cmp/call_a/a.wav", "cmp/call_c/c.wav"]  # no temp file, nothing of b


def test_keys_are_checked_without_touching_the_disk(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    assert storage.path_of("c/./x/../y.wav") == (tmp_path / "s").resolve() / "c" / "y.wav"
    with pytest.raises(errors.StoreError, match="leaves the storage folder"):
        storage.path_of("c/../../escape.wav")
    with pytest.raises(errors.StoreError, match="leaves the storage folder"):
        storage.path_of("c/..")


def test_linked_sources_are_stored_without_a_copy_and_outlive_their_landing_name(tmp_path):
    source = tmp_path / "landing" / "a.wav"
    source.parent.mkdir()
    source.write_bytes(b"a" * 3000)
    linked, copied = LocalStorage(tmp_path / "l", link_sources=True), LocalStorage(tmp_path / "c")
    [by_link] = linked.put_files([("cmp/call_a/a.wav", source)])
    [by_copy] = copied.put_files([("cmp/call_a/a.wav", source)])
    assert by_link == by_copy  # same key, size and sha256 either way
    assert linked.path_of(by_link.key).stat().st_ino == source.stat().st_ino
    assert copied.path_of(by_copy.key).stat().st_ino != source.stat().st_ino
    source.unlink()  # the import removes the landing name afterwards
    with linked.local_copy(by_link.key) as path:
        assert path.read_bytes() == b"a" * 3000


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second filesystem (/dev/shm)")
def test_a_source_on_another_filesystem_is_copied(tmp_path):
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        source = Path(other) / "a.wav"
        source.write_bytes(b"z" * 2000)
        if source.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem here")
        storage = LocalStorage(tmp_path / "s", link_sources=True)
        [stored] = storage.put_files([("cmp/call_a/a.wav", source)])
        assert stored.sha256 == hashlib.sha256(b"z" * 2000).hexdigest()
        assert storage.path_of(stored.key).stat().st_ino != source.stat().st_ino
