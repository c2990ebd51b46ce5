"""The real HTTP API (``start_http_server``) on a free port, in a thread with its own loop.

For tests that need real sockets (streaming, early 413, dropped connections, the bulk CLI)
without starting the whole daemon. The server gets the test's database, storage and clock.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ingestd.api.server import HttpServer, start_http_server
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake
from ingestd.storage.local import LocalStorage


class LiveApi:
    """``with LiveApi(settings, db, clock) as api: api.url`` — stopped on exit."""

    def __init__(self, settings: Settings, db: Database, clock: Clock,
                 intake: Intake | None = None) -> None:
        self.settings = settings.model_copy(update={
            "http": settings.http.model_copy(update={"port": 0})})
        self.db = db
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: HttpServer | None = None
        self.intake = intake or Intake(db, LocalStorage(self.settings.storage_path),
                                       self.settings.limits, clock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def __enter__(self) -> LiveApi:
        self.thread.start()
        self.server = self._call(start_http_server(self.settings, self.db, self.intake,
                                                   self.clock))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.server is not None:
            self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


def tweak(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy of ``settings`` with some keys of some sections changed: ``http={"port": 0}``."""
    update = {name: getattr(settings, name).model_copy(update=values)
              for name, values in sections.items()}
    return settings.model_copy(update=update)
