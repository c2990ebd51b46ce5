"""Events of a folder tree from Linux inotify, read on the event loop: no threads.

:class:`TreeWatch` watches every folder below a root (inotify watches one folder each, so new
folders are added as they appear) and hands each event's path, relative to the root, to a
callback on the loop. Only what can make a file complete is asked of the kernel: a file or
folder created or moved in, and a file closed after writing. Reads, writes and removals are
never reported, so an import's reads of its landing files cost nothing here.

Why not watchdog: its observer parses each event in one thread, queues it in a second and
dispatches it in a third, and the daemon's landing tree gets one event per SFTP upload (its
rename into the tree), which the sweeper then drops (the SFTP process reported the file).
That cost 0.45 ms of CPU per 4 KiB upload, as much as recording and routing the file; read
here, an event costs a few microseconds (bench/RESULTS.md, session 7).

Events only make the sweeper look sooner: every interval tick walks the whole tree, so an
event that is lost (the kernel's queue overflowed, the watch limit was reached, a folder
appeared and filled before its watch was added) costs latency, never a file. A folder that
appears is walked once when its watch is added, for files that arrived before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
# Folders only, never through a symbolic link (the SFTP jail does not follow them either).
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DONT_FOLLOW
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
READ_BYTES = 64 * 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class TreeWatch:
    """inotify watches on ``root`` and every folder below it; ``on_path(rel_path)`` runs on
    the loop for each file created, moved in or closed after writing (``rel_path`` is POSIX,
    relative to ``root``); ``on_overflow()`` when the kernel dropped events."""

    def __init__(self, root: Path, on_path: Callable[[str], None],
                 on_overflow: Callable[[], None]) -> None:
        self.root = root
        self.on_path = on_path
        self.on_overflow = on_overflow
        self._fd = -1
        self._folders: dict[int, str] = {}  # watch descriptor -> folder relative to root
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit_logged = False

    def start(self) -> None:
        """Watch the tree as it is now; call on the event loop that runs the callbacks."""
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd = fd
        self._watch_tree("", report_files=False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def stop(self) -> None:
        """Stop reading and drop every watch; call on the loop that started it."""
        if self._fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._folders.clear()

    @property
    def folders(self) -> int:
        """How many folders are watched."""
        return len(self._folders)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start:start + length].rstrip(b"\0")
            offset = start + length
            if mask & IN_Q_OVERFLOW:
                log.warning("tree_events_lost root=%s reason=the kernel's event queue "
                            "overflowed; the next walk of the tree finds the files", self.root)
                self.on_overflow()
                continue
            if mask & IN_IGNORED:  # the folder is gone (or left the tree): its watch ended
                self._folders.pop(wd, None)
                continue
            folder = self._folders.get(wd)
            if folder is None or not name:  # not ours, or about the watched folder itself
                continue
            rel_path = _join(folder, os.fsdecode(name))
            if mask & IN_ISDIR:
                self._watch_tree(rel_path, report_files=True)
            else:
                self.on_path(rel_path)

    def _watch_tree(self, rel_folder: str, report_files: bool) -> None:
        """Watch ``rel_folder`` and the folders below it; with ``report_files``, hand on the
        files already in them (they may have arrived before the watch)."""
        pending = [rel_folder]
        while pending:
            folder = pending.pop()
            if not self._add_watch(folder):
                continue
            try:
                with os.scandir(self.root / folder if folder else self.root) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(_join(folder, entry.name))
                        elif report_files and entry.is_file(follow_symlinks=False):
                            self.on_path(_join(folder, entry.name))
            except OSError as exc:  # gone again already, or not ours to read
                if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                    log.warning("tree_watch_failed path=%s reason=%s", folder or ".",
                                exc.strerror or exc)
                continue

    def _add_watch(self, rel_folder: str) -> bool:
        path = os.fsencode(self.root / rel_folder if rel_folder else self.root)
        wd = _libc.inotify_add_watch(self._fd, path, WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC and not self._limit_logged:
                self._limit_logged = True
                log.warning("tree_watch_limit_reached root=%s folders=%d reason=raise "
                            "fs.inotify.max_user_watches; until then the interval walk finds "
                            "files in the folders beyond it", self.root, len(self._folders))
            elif code not in (errno.ENOENT, errno.ENOTDIR, errno.ENOSPC):
                log.warning("tree_watch_failed path=%s reason=%s", rel_folder or ".",
                            os.strerror(code))
            return False
        self._folders[wd] = rel_folder  # the same folder again (moved) keeps its wd
        return True


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
