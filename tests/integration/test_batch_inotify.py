"""TreeWatch: a folder tree's file events from the real kernel (inotify), read on the loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from batch.inotify import TreeWatch


class Seen:
    """What a TreeWatch handed over."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.overflows = 0

    def path(self, rel_path: str) -> None:
        self.paths.append(rel_path)

    def overflow(self) -> None:
        self.overflows += 1


async def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def watching(root: Path, scenario: Callable[[TreeWatch, Seen], object]) -> Seen:
    seen = Seen()

    async def run() -> None:
        tree = TreeWatch(root, seen.path, seen.overflow)
        tree.start()
        try:
            await scenario(tree, seen)  # type: ignore[misc]
        finally:
            tree.stop()

    asyncio.run(run())
    return seen


def test_new_files_and_files_in_new_folders_are_reported_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()

    async def scenario(tree: TreeWatch, seen: Seen) -> None:
        (tmp_path / "acme" / "a.wav").write_bytes(b"a")
        await until(lambda: "acme/a.wav" in seen.paths, "a file in a folder watched at start")
        (tmp_path / "acme" / "2026-01-15" / "deep").mkdir(parents=True)
        await until(lambda: tree.folders == 4, "watches on the two new folders")
        (tmp_path / "acme" / "2026-01-15" / "deep" / "b.wav").write_bytes(b"b")
        await until(lambda: "acme/2026-01-15/deep/b.wav" in seen.paths, "a file two folders down")
        # A folder that arrives full (moved in): its files came before any watch could exist.
        outside = tmp_path.parent / f"{tmp_path.name}-outside"
        (outside / "sub").mkdir(parents=True)
        (outside / "sub" / "c.wav").write_bytes(b"c")
        os.rename(outside, tmp_path / "acme" / "moved")
        await until(lambda: "acme/moved/sub/c.wav" in seen.paths, "a file in a moved-in folder")

    watching(tmp_path, scenario)


def test_reads_writes_and_removals_are_not_reported_and_links_are_not_followed(
        tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "old.wav").write_bytes(b"old")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (tmp_path / "acme" / "link").symlink_to(elsewhere, target_is_directory=True)

    async def scenario(tree: TreeWatch, seen: Seen) -> None:
        assert tree.folders == 2  # the root and acme; not the link's target
        assert (tmp_path / "acme" / "old.wav").read_bytes() == b"old"
        with open(tmp_path / "acme" / "old.wav", "rb") as fh:
            fh.read()
        (tmp_path / "acme" / "old.wav").unlink()
        (elsewhere / "behind-the-link.wav").write_bytes(b"x")
        (tmp_path / "acme" / "marker.wav").write_bytes(b"m")  # events arrive in order
        await until(lambda: "acme/marker.wav" in seen.paths, "the marker file")
        assert set(seen.paths) == {"acme/marker.wav"}

    watching(tmp_path, scenario)


def test_an_overflowed_event_queue_is_reported(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())

    async def scenario(tree: TreeWatch, seen: Seen) -> None:
        # The loop does not run in between: the kernel queues every event until it drops some.
        for i in range(limit + 10):
            (tmp_path / f"f{i}").touch()
        await until(lambda: seen.overflows == 1, "the overflow to be reported", timeout=30)

    watching(tmp_path, scenario)
