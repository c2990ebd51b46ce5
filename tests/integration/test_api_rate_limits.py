"""Rate limits per key over real HTTP: headers on every response, 429 with Retry-After."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import make_campaign
from fakes.http_server import LiveApi, tweak
from test_api_upload import MP3, assert_error, post

from ingestd import api_keys


@pytest.fixture
def keys(db, clock):
    acme = make_campaign(db, clock, "acme")
    other = make_campaign(db, clock, "other")
    return api_keys.create(db, acme.slug, clock), api_keys.create(db, other.slug, clock)


def test_requests_past_the_minute_budget_are_429_until_the_window_ends(settings, db, clock,
                                                                      keys):
    key, other_key = keys
    settings = tweak(settings, http={"rate_limit_per_minute": 3})
    with LiveApi(settings, db, clock) as api:
        url = f"{api.url}/api/v1/batches"
        remaining = [httpx.get(url, headers={"X-API-Key": key}).headers["x-ratelimit-remaining"]
                     for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        clock.advance(20)
        refused = httpx.get(url, headers={"X-API-Key": key})
        body = assert_error(refused, 429, "RATE_LIMITED", "3 requests a minute")
        assert body["error"]["retry_after"] == 40 and refused.headers["retry-after"] == "40"
        assert refused.headers["x-ratelimit-reset"] == "40"
        # Another key has its own budget; health checks are not counted.
        assert httpx.get(url, headers={"X-API-Key": other_key}).status_code == 200
        assert httpx.get(f"{api.url}/healthz").headers["x-ratelimit-limit"] == "3"
        clock.advance(40)
        again = httpx.get(url, headers={"X-API-Key": key})
        assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "2"


def test_unauthenticated_requests_are_limited_per_address(settings, db, clock):
    settings = tweak(settings, http={"rate_limit_per_minute": 2})
    with LiveApi(settings, db, clock) as api:
        codes = [httpx.get(f"{api.url}/api/v1/batches").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_concurrent_uploads_past_the_limit_are_429(settings, db, clock, keys, corpus):
    key, _ = keys
    settings = tweak(settings, http={"max_concurrent_uploads": 1})
    with LiveApi(settings, db, clock) as api:
        holder = _start_slow_upload(api, key, settings)
        try:
            refused = post(api, key, corpus / "calls" / MP3)
            body = assert_error(refused, 429, "RATE_LIMITED", "1 uploads of this key")
            assert body["error"]["retry_after"] == 1 and refused.headers["retry-after"] == "1"
        finally:
            holder.close()
        _wait(lambda: not list(settings.incoming_path.glob("http-*")))
        assert post(api, key, corpus / "calls" / MP3).status_code == 201


def _start_slow_upload(api, key, settings):
    """An upload that has started streaming and then stalls, holding its slot."""
    port = int(api.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    sock.sendall(b"POST /api/v1/calls/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode()
                 + b"\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                 + b"Content-Length: 100000\r\n\r\n" + head + b"\0" * 1000)
    _wait(lambda: list(settings.incoming_path.glob("http-*")))
    return sock


def _wait(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
