"""A scripted HTTP server on 127.0.0.1 for contract tests: the real SDK talks to it over TCP.

Each vendor double (``fakes.vendors``) subclasses :class:`LoopbackServer` and implements
:meth:`answer`. Faults are scripted in order with :meth:`fail_next`: the next matching request
gets an HTTP error, or hangs (the client's timeout fires), before normal answers resume. Every
request is recorded, so a test can check what the SDK really sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str as they are
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0  # > 0: say nothing for that long (a timeout on the client side)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return json.dumps(self.body).encode(), "application/json"


class LoopbackServer:
    """Serves on a free port from a thread; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._faults: list[tuple[str | None, Reply]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._released.set()  # wake hung handlers so they end
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail_next(self, reply: Reply, path_prefix: str | None = None) -> None:
        """The next request (whose path starts with ``path_prefix``) gets ``reply``."""
        with self._lock:
            self._faults.append((path_prefix, reply))

    def answer(self, request: Request) -> Reply:
        """The normal answer to ``request``; vendors override."""
        return Reply(404, {"error": "not found"})

    def hold(self, seconds: float) -> None:
        """Block the handler thread for ``seconds`` (or until the server stops)."""
        self._released.wait(seconds)

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            fault = self._take_fault(request.path)
        try:
            reply = fault or self.answer(request)
            if reply.hang_seconds:
                self.hold(reply.hang_seconds)
            return reply
        finally:
            with self._lock:
                self._in_flight -= 1

    def _take_fault(self, path: str) -> Reply | None:
        for index, (prefix, reply) in enumerate(self._faults):
            if prefix is None or path.startswith(prefix):
                del self._faults[index]
                return reply
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else self._read_chunked()
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                reply = server._dispatch(request)
                payload, content_type = reply.encoded()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a scripted timeout)

            def _read_chunked(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() != "chunked":
                    return b""
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
