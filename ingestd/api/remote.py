"""``audio_url``: fetch a recording from a URL the client gives, safely. Blocking (a thread).

The host is resolved once and every address it resolves to is checked: private, loopback,
link-local, multicast, reserved and unspecified addresses are refused unless
``http.allow_private_urls`` is set (so the daemon cannot be used to reach the network behind
it). The connection then goes to the checked address itself (no second lookup an attacker could
answer differently), with the original host name for TLS and the ``Host`` header. Redirects are
followed up to three times, each one checked again. The body is counted while it is written:
past ``limits.max_file_bytes`` the download stops with 413. One overall deadline
(``http.audio_url_timeout_seconds``) bounds the whole transfer.
"""

from __future__ import annotations

import http.client
import ipaddress
import secrets
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from ingestd.api.envelope import ApiError
from ingestd.api.form import TEMP_SUFFIX, ReceivedForm, clean_file_name

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def download(url: str, incoming: Path, max_bytes: int, timeout: float,
             allow_private: bool) -> ReceivedForm:
    """Download ``url`` to a temporary file in ``incoming``; ApiError on any refusal."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        response, conn = _request(url, deadline, allow_private)
        try:
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location", ""))
                continue
            if response.status != 200:
                raise ApiError(400, f"audio_url answered HTTP {response.status}, not 200")
            return _save(response, conn, url, incoming, max_bytes, deadline)
        finally:
            conn.close()
    raise ApiError(400, f"audio_url redirected more than {MAX_REDIRECTS} times")


def _request(url: str, deadline: float, allow_private: bool
             ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, f"audio_url must be an http or https URL (got {url!r})")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _checked_address(parts.hostname, port, allow_private)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = kind(parts.hostname, port, address, _left(deadline))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "ingestd", "Accept": "*/*"})
        return conn.getresponse(), conn
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise ApiError(400, f"audio_url could not be fetched: {exc}") from exc


def _checked_address(host: str, port: int, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ApiError(400, f"audio_url host {host!r} does not resolve: {exc}") from exc
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        for address in addresses:
            if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
                raise ApiError(400, f"audio_url host {host!r} resolves to the non-public "
                                    f"address {address}; refused")
    return addresses[0]


def _save(response: http.client.HTTPResponse, conn: http.client.HTTPConnection, url: str,
          incoming: Path, max_bytes: int, deadline: float) -> ReceivedForm:
    name = clean_file_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "")
    incoming.mkdir(parents=True, exist_ok=True)
    form = ReceivedForm(file_name=name,
                        path=incoming / f"http-{secrets.token_hex(12)}{TEMP_SUFFIX}")
    try:
        with form.path.open("xb") as fh:
            while chunk := _read(response, conn, deadline):
                form.size += len(chunk)
                if form.size > max_bytes:
                    raise ApiError(413, f"audio_url file too large: more than the limit of "
                                        f"{max_bytes} bytes")
                fh.write(chunk)
    except BaseException:
        form.discard()
        raise
    return form


def _read(response: http.client.HTTPResponse, conn: http.client.HTTPConnection,
          deadline: float) -> bytes:
    if conn.sock is not None:  # each read waits at most what is left of the deadline
        conn.sock.settimeout(_left(deadline))
    else:
        _left(deadline)
    try:
        return response.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise ApiError(400, f"audio_url download failed: {exc}") from exc


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ApiError(400, "audio_url download timed out")
    return left
