"""Run the HTTP API inside the daemon's event loop (uvicorn's Server on a socket we bind).

Binding the socket here lets ``http.port = 0`` pick a free port that the handle reports, and
turns "address in use" into a ConfigError before anything else starts. uvicorn's own signal
handling is switched off: the daemon owns SIGTERM/SIGINT and calls :meth:`HttpServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from ingestd import errors
from ingestd.api.app import create_app
from ingestd.api.context import ApiContext
from ingestd.clock import Clock
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.intake import Intake

log = logging.getLogger("ingestd.api")
STARTUP_TIMEOUT_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 10


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handlers (the daemon has its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HttpServer:
    """A running HTTP API: ``port`` is the real one (useful with ``http.port = 0``)."""

    host: str
    port: int
    server: uvicorn.Server
    task: asyncio.Task

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (bounded), then return."""
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), GRACEFUL_SHUTDOWN_SECONDS + 5)
        except TimeoutError:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        log.info("http_server_stopped port=%d", self.port)


async def start_http_server(settings: Settings, db: Database, intake: Intake,
                            clock: Clock) -> HttpServer:
    """Bind ``settings.http.host/port`` and serve the API on the running loop."""
    sock = _bind(settings.http.host, settings.http.port)
    app = create_app(ApiContext.build(settings, db, intake, clock))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            server_header=False)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
    await _wait_started(server, task)
    port = sock.getsockname()[1]
    log.info("http_server_started host=%s port=%d", settings.http.host, port)
    return HttpServer(host=settings.http.host, port=port, server=server, task=task)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        raise errors.ConfigError(f"cannot listen for HTTP on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


async def _wait_started(server: uvicorn.Server, task: asyncio.Task) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise errors.ConfigError("the HTTP server stopped during start-up")
        if loop.time() > deadline:
            server.should_exit = True
            raise errors.ConfigError("the HTTP server did not start within "
                                     f"{STARTUP_TIMEOUT_SECONDS:g} s")
        await asyncio.sleep(0.01)
