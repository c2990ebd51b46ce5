"""BatchedReplies: the replies written in one loop turn reach the channel as one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from sftp_server.replies import BatchedReplies


class RecordingChannel:
    """Stands in for an asyncssh channel: records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes, datatype: Any = None) -> None:
        self.calls.append(("write", (data, datatype)))

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def close(self) -> None:
        self.calls.append(("close", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def next_turn() -> None:
    await asyncio.sleep(0)


def test_replies_of_one_turn_reach_the_channel_as_one_write():
    async def scenario() -> list[tuple[str, Any]]:
        chan = RecordingChannel()
        replies = BatchedReplies(chan)
        for n in range(5):
            replies.write(b"status%d;" % n)
        assert chan.calls == []  # held until the turn ends
        assert replies.get_write_buffer_size() == 5 * len(b"status0;")
        await next_turn()
        replies.write(b"later;")
        await next_turn()
        return chan.calls

    calls = asyncio.run(scenario())
    assert calls == [("write", (b"status0;status1;status2;status3;status4;", None)),
                     ("write", (b"later;", None))]


def test_eof_close_and_extended_data_go_after_what_is_held():
    async def scenario() -> list[tuple[str, Any]]:
        chan = RecordingChannel()
        replies = BatchedReplies(chan)
        replies.write(b"a")
        replies.write(b"err", 1)
        replies.write(b"b")
        replies.write_eof()
        replies.write(b"c")
        replies.close()
        await next_turn()  # the scheduled flush finds nothing left
        return chan.calls

    assert asyncio.run(scenario()) == [
        ("write", (b"a", None)), ("write", (b"err", 1)), ("write", (b"b", None)), ("eof", None),
        ("write", (b"c", None)), ("close", None)]


def test_replies_to_a_closing_channel_are_dropped_and_the_rest_is_the_channels_own():
    async def scenario() -> RecordingChannel:
        chan = RecordingChannel()
        replies = BatchedReplies(chan)
        replies.write(b"late")
        chan.closing = True
        await next_turn()
        assert replies.get_extra_info("username") == "info:username"
        assert replies.is_closing()
        return chan

    assert asyncio.run(scenario()).calls == []
