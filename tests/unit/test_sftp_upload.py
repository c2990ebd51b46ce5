"""Upload: each write is in the file at once, and the landed file is exactly what was sent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sftp_server.upload import Upload


def start(root: Path, name: str = "call.wav") -> Upload:
    (root / "incoming").mkdir(exist_ok=True)
    (root / "landing").mkdir(exist_ok=True)
    return Upload(root / "incoming", name, root / "landing" / name, "user")


def test_each_write_is_in_the_file_at_once_and_lands_whole(tmp_path):
    upload = start(tmp_path)
    chunk = os.urandom(32768)
    for n in range(3):
        upload.write_at(n * len(chunk), chunk)
        assert os.stat(upload.temp_path).st_size == (n + 1) * len(chunk)  # nothing held back
    upload.seek(len(chunk))
    assert upload.read(10) == chunk[:10]  # what a client's READ of its open handle sees
    landed = upload.land()
    assert landed.size == 3 * len(chunk)
    assert (tmp_path / "landing" / "call.wav").read_bytes() == chunk * 3
    assert not upload.temp_path.exists()


def test_discard_drops_the_bytes_and_counts_them(tmp_path):
    upload = start(tmp_path)
    upload.write_at(0, b"a" * 100)
    assert upload.discard() == 100
    assert not upload.temp_path.exists()
    assert not (tmp_path / "landing" / "call.wav").exists()


writes = st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=700)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(writes=writes)
def test_any_order_of_writes_lands_as_a_plain_file_would_hold_it(writes):
    expected = bytearray()
    for offset, data in writes:  # what pwrite after pwrite leaves in a file
        if data:
            expected.extend(b"\0" * max(0, offset + len(data) - len(expected)))
            expected[offset:offset + len(data)] = data
    with tempfile.TemporaryDirectory() as root:
        upload = start(Path(root))
        for offset, data in writes:
            upload.write_at(offset, data)
        upload.land()
        assert (Path(root) / "landing" / "call.wav").read_bytes() == bytes(expected)
