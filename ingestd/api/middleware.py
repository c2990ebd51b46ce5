"""The outermost layer of the app: request id, key lookup, rate limit, headers, last-resort 500.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware) so the request body streams
through untouched. For each HTTP request it

- gives the request an id (``meta.request_id`` and the ``X-Request-ID`` header);
- verifies ``X-API-Key`` once (the routes read the result from ``request.state.api_key``);
- counts the request against its bucket and answers ``429`` when the budget is spent;
- adds ``X-RateLimit-*`` to whatever response goes out, error responses included;
- turns an exception that escaped the app into a ``500`` envelope when nothing was sent yet.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingestd import api_keys
from ingestd.api.context import API_KEY_HEADER, ApiContext
from ingestd.api.envelope import ApiError, error_body
from ingestd.api.limits import RateState

log = logging.getLogger("ingestd.api")
# Probes and scrapers are not counted against anyone's budget (they still see the headers).
UNCOUNTED_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json"})


class ApiMiddleware:
    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = request_id = f"req_{secrets.token_hex(8)}"
        key = await self._verify(_header(scope, API_KEY_HEADER))
        state["api_key"] = key
        state["rate_bucket"] = bucket = (f"key:{key.key_id}" if key
                                         else f"addr:{(scope.get('client') or ('?',))[0]}")
        limiter = self.context.limiter
        rate = (limiter.peek(bucket) if scope["path"] in UNCOUNTED_PATHS
                else limiter.hit(bucket))
        extra = {**rate.headers(), "X-Request-ID": request_id}
        if not rate.allowed:
            await self._send_error(send, _rate_limited(rate), request_id, extra)
            return
        await self._run(scope, receive, send, extra)

    async def _verify(self, presented: str | None) -> api_keys.VerifiedKey | None:
        if not presented:
            return None
        return await asyncio.to_thread(api_keys.verify, self.context.db, presented)

    async def _run(self, scope: Scope, receive: Receive, send: Send,
                   extra: dict[str, str]) -> None:
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *_encode(extra)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("request_failed request_id=%s path=%s", extra["X-Request-ID"],
                          scope.get("path"))
            if started:
                raise
            error = ApiError(500, "the server failed while handling the request; nothing "
                                  "was kept (see the server log for this request_id)")
            await self._send_error(send, error, extra["X-Request-ID"], extra)

    async def _send_error(self, send: Send, error: ApiError, request_id: str,
                          extra: dict[str, str]) -> None:
        body = error_body(error, request_id, self.context.clock)
        headers = {"content-type": "application/json", "content-length": str(len(body)),
                   **error.headers, **extra}
        await send({"type": "http.response.start", "status": error.status,
                    "headers": _encode(headers)})
        await send({"type": "http.response.body", "body": body})


def _rate_limited(rate: RateState) -> ApiError:
    return ApiError(429, f"rate limit of {rate.limit} requests a minute reached; retry in "
                         f"{rate.reset_seconds} s",
                    headers={"Retry-After": str(rate.reset_seconds)},
                    retry_after=rate.reset_seconds)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", []):
        if key == wanted:
            return value.decode("latin-1")
    return None


def _encode(headers: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
