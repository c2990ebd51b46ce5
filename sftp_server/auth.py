"""Who may log in: password and public-key checks against ``sftp_users``, and the defender.

Passwords are stored as self-describing scrypt strings
(``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``) so the cost can be raised later without
breaking stored hashes. Database reads run in a worker thread: asyncssh accepts awaitables
from its auth hooks. The :class:`Defender` scores failures per client address (SFTPGo's
defender, fail2ban) and refuses a banned address before any check is made.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

import asyncssh
from sqlmodel import select

from ingestd.db import Database
from ingestd.models import SftpUser

log = logging.getLogger(__name__)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, safe to store."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password`."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except ValueError:  # malformed stored value (bad fields, bad base64, bad cost)
        return False


def check_public_key(text: str) -> str:
    """The OpenSSH public key line ``text``, stripped; ValueError if it is not one."""
    line = text.strip()
    try:
        asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key: {exc}") from exc
    return line


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * r * (n + p + 2) + 1024 * 1024, dklen=HASH_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class Defender:
    """Scores failed logins per address; an address above the limit is banned for a while.

    SPEC defaults: a wrong password or key scores 1, an unknown user 2; above 15 points within
    30 minutes the address is banned for 30 minutes. Other addresses are unaffected. The daemon's
    SFTP processes share one defender in the main process (``cli/sftp_process.py``): each
    reports its failures there and applies the bans it is told of (:meth:`ban`).
    """

    def __init__(self, threshold: int = 15, window_seconds: float = 1800.0,
                 ban_seconds: float = 1800.0, unknown_user_score: int = 2,
                 now: Callable[[], float] = time.monotonic,
                 on_ban: Callable[[str, float], None] | None = None) -> None:
        self.threshold = threshold
        self.window_seconds = window_seconds
        self.ban_seconds = ban_seconds
        self.unknown_user_score = unknown_user_score
        self._now = now
        self._on_ban = on_ban  # told (address, seconds) of each ban this defender decides
        self._events: dict[str, list[tuple[float, int]]] = {}
        self._banned_until: dict[str, float] = {}

    def is_banned(self, address: str) -> bool:
        """True while ``address`` serves a ban."""
        until = self._banned_until.get(address)
        if until is None:
            return False
        if self._now() >= until:
            del self._banned_until[address]
            return False
        return True

    def record_failure(self, address: str, unknown_user: bool) -> None:
        """Count one failed attempt; ban the address when its recent score passes the limit."""
        now = self._now()
        score = self.unknown_user_score if unknown_user else 1
        recent = [(at, s) for at, s in self._events.get(address, [])
                  if now - at < self.window_seconds]
        recent.append((now, score))
        self._events[address] = recent
        if sum(s for _, s in recent) > self.threshold:
            self._events.pop(address, None)
            self.ban(address, self.ban_seconds)
            log.warning("address_banned address=%s seconds=%s", address, self.ban_seconds)
            if self._on_ban is not None:
                self._on_ban(address, self.ban_seconds)

    def ban(self, address: str, seconds: float) -> None:
        """Refuse ``address`` for ``seconds`` from now (a ban decided here or elsewhere)."""
        self._banned_until[address] = self._now() + seconds


class SftpAuthServer(asyncssh.SSHServer):
    """One instance per connection: authenticates against the ``sftp_users`` table."""

    def __init__(self, db: Database, defender: Defender,
                 live: set[asyncssh.SSHServerConnection]) -> None:
        self.db = db
        self.defender = defender
        self.live = live  # every open connection of the listener, for a clean shutdown
        self.address = "unknown"
        self._conn: asyncssh.SSHServerConnection | None = None
        self._unknown_key_user_scored = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "unknown"
        self._conn = conn
        self.live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self.live.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        if self.defender.is_banned(self.address):
            log.warning("auth_failed username=%s address=%s reason=banned",
                        username, self.address)
            raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                           "too many failed logins from this address")
        return True  # every user must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        user = await asyncio.to_thread(self._load_user, username)
        ok = (user is not None and bool(user.password_hash)
              and await asyncio.to_thread(verify_password, password, user.password_hash or ""))
        return self._outcome(username, user, ok, "password")

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        user = await asyncio.to_thread(self._load_user, username)
        ok = user is not None and any(_same_key(line, key) for line in user.public_keys)
        # A client offers each of its keys in turn: a key that does not match is no attack,
        # and an unknown user scores once per connection, not once per key offered.
        score = user is None and not self._unknown_key_user_scored
        self._unknown_key_user_scored = self._unknown_key_user_scored or score
        return self._outcome(username, user, ok, "public_key", score=score)

    def _outcome(self, username: str, user: SftpUser | None, ok: bool, method: str,
                 score: bool = True) -> bool:
        if not ok and score:
            self.defender.record_failure(self.address, unknown_user=user is None)
        if not ok:
            log.warning("auth_failed username=%s address=%s method=%s reason=%s", username,
                        self.address, method, "unknown user" if user is None else "bad " + method)
        return ok

    def _load_user(self, username: str) -> SftpUser | None:
        with self.db.session() as session:
            return session.exec(select(SftpUser).where(SftpUser.username == username)).first()


def _same_key(line: str, offered: asyncssh.SSHKey) -> bool:
    """True when the OpenSSH public key ``line`` is the key the client offered."""
    try:
        stored = asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError):
        log.warning("public_key_ignored reason=unreadable key line")
        return False
    return stored.public_data == offered.public_data
