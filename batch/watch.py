"""watchdog: react to the landing tree at once, and take files in from local drop folders.

The only module that imports watchdog. Two jobs, both feeding the ordinary sweep:

- **Landing tree.** A file put into ``<landing>/<slug>/…`` by other means than the SFTP server
  (a copy, a mount, an operator) is noticed at once: any create, move-in or close after
  writing hands the path to the sweeper, which looks at that path now (recording the file with
  ``stable_at``) and again once ``stable_seconds`` passed (to route it), instead of waiting for
  the next interval. Detection itself stays the sweep's rule (size and mtime unchanged across
  ``stable_seconds``), and every interval tick walks the whole tree, so a missed event costs
  only latency.
- **Drop folders** (``[watch] folders = [{path, campaign}]``). A file is taken once its size and
  mtime stayed unchanged for ``sftp.stable_seconds``: it is *moved* into the landing tree under
  the campaign's slug, keeping its subfolders (``<drop>/2026-01-15/a.mp3`` →
  ``<landing>/<slug>/2026-01-15/a.mp3``, the scope ``<slug>/2026-01-15``), recorded with source
  ``WATCH`` and processed like an SFTP upload. Moving (not copying) empties the drop folder, which
  tells whoever dropped the file that it was taken; across filesystems it is copied to a
  dot-named temporary in the target folder first and renamed, so the landing tree never shows a
  half-copied file. The row is recorded *before* the rename, so a sweep in between sees a known
  file, never a new one of source ``SFTP``. Temporary names (``sftp.ignore_patterns``) are left
  alone; a folder whose campaign does not exist is reported and left alone. Files already there
  at start-up are taken too: the folders are polled (every ``POLL_SECONDS``, and at once on an
  event), watchdog only makes that poll come sooner.

``start_watching`` must be called on the daemon's event loop; ``WatchHandle.stop`` blocks until
the threads ended (call it through ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from batch.sweeper import Sweeper
from ingestd.config import Settings, WatchFolder
from ingestd.landing import LandingRecorder, is_temporary
from ingestd.models import CallSource, Campaign

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
# What the kernel reports at all (watchdog turns this list into the inotify mask). Without it
# every read of a landing file (two opens and closes per import), every removal after an
# import and every write() of a copy was an event that watchdog's threads parsed in Python
# and dropped: 15 % of the main process's busy time while a 20,000-file batch was imported.
# A file's writes need no event of their own: its create or move-in starts the look, its close
# after writing is the moment it may be complete, and the look after ``stable_seconds``
# re-checks its size and mtime anyway.
WATCHED_EVENTS = [FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent,
                  FileClosedEvent]
REACTING_EVENTS = frozenset(kind.event_type for kind in WATCHED_EVENTS)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time the size and mtime were first seen like this


class DropFolder:
    """One ``[watch]`` folder: finds stable files and moves them into the landing tree."""

    def __init__(self, folder: WatchFolder, settings: Settings, recorder: LandingRecorder,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(folder.path)
        self.slug = folder.campaign
        self.settings = settings
        self.recorder = recorder
        self.now = now
        self._seen: dict[Path, _Seen] = {}
        self._warned = False

    def poll(self) -> list[str]:
        """Take every file that is stable; return the landing paths of the files taken."""
        if not self._campaign_exists():
            return []
        taken: list[str] = []
        current = set(self._files())
        for path in list(self._seen):
            if path not in current:
                del self._seen[path]
        for path in sorted(current):
            if self._is_stable(path):
                rel = self._take(path)
                if rel is not None:
                    taken.append(rel)
        return taken

    def _files(self) -> list[Path]:
        patterns = self.settings.sftp.ignore_patterns
        found: list[Path] = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if not is_temporary(d, patterns)]
            found.extend(Path(folder, n) for n in names if not is_temporary(n, patterns))
        return found

    def _is_stable(self, path: Path) -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        seen = self._seen.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            self._seen[path] = _Seen(stat.st_size, stat.st_mtime_ns, self.now())
            return self.settings.sftp.stable_seconds <= 0
        return self.now() - seen.since >= self.settings.sftp.stable_seconds

    def _take(self, path: Path) -> str | None:
        rel = "/".join((self.slug, *path.relative_to(self.root).parts))
        target = self.settings.landing_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.watching")
        shutil.move(path, staging)  # a rename on one filesystem, else copy + delete
        self._seen.pop(path, None)
        stat = staging.stat()
        file_id = self.recorder.landed(rel, stat.st_size, stat.st_mtime_ns, CallSource.WATCH)
        os.replace(staging, target)
        log.info("file_taken_from_watch_folder file_id=%s from=%s path=%s", file_id, path, rel)
        return rel

    def _campaign_exists(self) -> bool:
        with self.recorder.db.session() as session:
            found = session.exec(select(Campaign.id).where(Campaign.slug == self.slug)).first()
        if found is None and not self._warned:
            log.warning("watch_folder_ignored path=%s reason=no campaign with slug %r",
                        self.root, self.slug)
        self._warned = found is None
        return found is not None


class _Events(FileSystemEventHandler):
    """Turns watchdog's events into sweeper wakes (landing) or early polls (drop folders)."""

    def __init__(self, handle: WatchHandle) -> None:
        self.handle = handle

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in REACTING_EVENTS:
            return
        path = Path(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        self.handle.noticed(path)


class WatchHandle:
    """The running observer and drop-folder poller; :meth:`stop` ends both."""

    def __init__(self, settings: Settings, sweeper: Sweeper,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.sweeper = sweeper
        self.loop = loop
        self.drops = [DropFolder(f, settings, sweeper.recorder) for f in settings.watch.folders]
        self.observer = Observer()
        self._poke = threading.Event()
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="watch-folders",
                                        daemon=True)

    def start(self) -> None:
        landing = self.settings.landing_path
        landing.mkdir(parents=True, exist_ok=True)
        self.observer.schedule(_Events(self), str(landing), recursive=True,
                               event_filter=WATCHED_EVENTS)
        for drop in self.drops:
            drop.root.mkdir(parents=True, exist_ok=True)
            self.observer.schedule(_Events(self), str(drop.root), recursive=True,
                                   event_filter=WATCHED_EVENTS)
        self.observer.start()
        self._poller.start()
        log.info("watching_started landing=%s watch_folders=%s", landing,
                 [str(d.root) for d in self.drops])

    def noticed(self, path: Path) -> None:
        """An event about ``path`` (called on watchdog's thread)."""
        if any(path.is_relative_to(d.root) for d in self.drops):
            self._poke.set()
            return
        landing = self.settings.landing_path
        if not path.is_relative_to(landing) or self._temporary(path.relative_to(landing)):
            return
        rel_path = path.relative_to(landing).as_posix()
        with suppress(RuntimeError):  # the loop is closing: the daemon is stopping
            self.loop.call_soon_threadsafe(self.sweeper.landing_changed, rel_path)

    def _temporary(self, rel: Path) -> bool:
        return any(is_temporary(part, self.settings.sftp.ignore_patterns) for part in rel.parts)

    def _wake(self, delay: float) -> None:
        with suppress(RuntimeError):  # the loop is closing: the daemon is stopping
            self.loop.call_soon_threadsafe(self.sweeper.wake, delay)

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            for drop in self.drops:
                try:
                    if drop.poll():
                        self._wake(0.0)
                except Exception:
                    log.exception("watch_folder_poll_failed path=%s", drop.root)
            self._poke.wait(POLL_SECONDS)
            self._poke.clear()

    def stop(self) -> None:
        """Stop observing and polling; blocks until both threads ended."""
        self._stopping.set()
        self._poke.set()
        self.observer.stop()
        self.observer.join()
        if self._poller.is_alive():
            self._poller.join()
        log.info("watching_stopped")


def start_watching(settings: Settings, sweeper: Sweeper) -> WatchHandle:
    """Start watching the landing tree and the drop folders; call on the daemon's event loop."""
    handle = WatchHandle(settings, sweeper, asyncio.get_running_loop())
    handle.start()
    return handle
