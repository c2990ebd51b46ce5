"""React to the landing tree at once, and take files in from local drop folders.

Both read file events from inotify on the event loop (:class:`~batch.inotify.TreeWatch`).
Two jobs, both feeding the ordinary sweep:

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
  event) in a thread of their own; an event only makes that poll come sooner.

``start_watching`` must be called on the daemon's event loop; ``WatchHandle.aclose`` ends the
event readers there and waits for the poller thread.
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

from batch.inotify import TreeWatch
from batch.sweeper import Sweeper
from ingestd.config import Settings, WatchFolder
from ingestd.landing import LandingRecorder, is_temporary
from ingestd.models import CallSource, Campaign

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


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


class WatchHandle:
    """The running tree watches and drop-folder poller; :meth:`aclose` ends them."""

    def __init__(self, settings: Settings, sweeper: Sweeper,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.sweeper = sweeper
        self.loop = loop
        self.drops = [DropFolder(f, settings, sweeper.recorder) for f in settings.watch.folders]
        self.trees: list[TreeWatch] = []
        self._poke = threading.Event()
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="watch-folders",
                                        daemon=True)

    def start(self) -> None:
        landing = self.settings.landing_path
        landing.mkdir(parents=True, exist_ok=True)
        self.trees.append(TreeWatch(landing, self.landing_event,
                                    self.sweeper.landing_events_lost))
        for drop in self.drops:
            drop.root.mkdir(parents=True, exist_ok=True)
            self.trees.append(TreeWatch(drop.root, self._drop_event, self._poke.set))
        for tree in self.trees:
            tree.start()
        self._poller.start()
        log.info("watching_started landing=%s watch_folders=%s", landing,
                 [str(d.root) for d in self.drops])

    def landing_event(self, rel_path: str) -> None:
        """A file in the landing tree was created, moved in or closed after writing."""
        if not self._temporary(Path(rel_path)):
            self.sweeper.landing_changed(rel_path)

    def _drop_event(self, rel_path: str) -> None:
        self._poke.set()

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

    async def aclose(self) -> None:
        """Stop the event readers (here, on the loop) and the poller (awaited: it may be in
        the middle of moving a file)."""
        for tree in self.trees:
            tree.stop()
        self._stopping.set()
        self._poke.set()
        if self._poller.is_alive():
            await asyncio.to_thread(self._poller.join)
        log.info("watching_stopped")


def start_watching(settings: Settings, sweeper: Sweeper) -> WatchHandle:
    """Start watching the landing tree and the drop folders; call on the daemon's event loop."""
    handle = WatchHandle(settings, sweeper, asyncio.get_running_loop())
    handle.start()
    return handle
