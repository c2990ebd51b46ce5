"""The lines between an SFTP process and the main process: landing changes up, bans down."""

from __future__ import annotations

import asyncio
import os

from hypothesis import given
from hypothesis import strategies as st

from cli.sftp_process import CHANGE_LINE, Lifeline, decode_change, encode_change
from ingestd.landing import LandingChange
from ingestd.models import CallSource
from sftp_server.auth import Defender

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


def test_the_lifeline_gives_the_settings_line_then_applies_bans_split_across_reads() -> None:
    read_end, write_end = os.pipe()
    try:
        lifeline = Lifeline(read_end)
        os.write(write_end, b'{"settings": 1}\nban {"address": "10.0.0.9", "sec')
        assert lifeline.read_line() == b'{"settings": 1}\n'
        defender, stop = Defender(), asyncio.Event()
        # watch() runs when the pipe is readable: here with the rest of the first ban line
        os.write(write_end, b'onds": 60}\nban {"address": "10.0.0.8", "se')
        lifeline.watch(defender, stop)
        assert defender.is_banned("10.0.0.9") and not defender.is_banned("10.0.0.8")
        os.write(write_end, b'conds": 60}\n')
        lifeline.watch(defender, stop)
        assert defender.is_banned("10.0.0.8") and not stop.is_set()
        os.close(write_end)
        write_end = -1
        lifeline.watch(defender, stop)  # the main process is gone
        assert stop.is_set()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
