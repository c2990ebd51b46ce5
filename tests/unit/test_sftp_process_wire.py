"""The line an SFTP process writes for each landing change, read back by the main process."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cli.sftp_process import CHANGE_LINE, decode_change, encode_change
from ingestd.landing import LandingChange
from ingestd.models import CallSource

# Any path an SFTP client can name: newlines, quotes, non-ASCII and surrogate-free unicode.
paths = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)


@given(kind=st.sampled_from(["landed", "writing", "removed"]), rel_path=paths,
       size=st.integers(0, 1 << 40), mtime_ns=st.none() | st.integers(0, 1 << 62))
def test_a_change_survives_the_pipe_as_one_line(kind: str, rel_path: str, size: int,
                                                mtime_ns: int | None) -> None:
    change = LandingChange(kind, rel_path, size, mtime_ns, CallSource.SFTP)
    line = encode_change(change)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # the reader splits on newlines
    assert decode_change((CHANGE_LINE + line)[len(CHANGE_LINE):]) == change


def test_the_source_comes_back_as_the_enum() -> None:
    change = decode_change(encode_change(LandingChange("landed", "acme/a.wav", 3, 4)))
    assert change.source is CallSource.SFTP
