"""The SFTP listener: host key, ciphers, and one :class:`LandingSftpServer` per session.

Sessions are handed out by the connection (``session_requested``) rather than by
``listen(sftp_factory=…)``, so that the client's bytes pass through
:class:`~sftp_server.session.SftpSession` first (rclone 1.60's malformed WRITEs, replies sent
together).

The host key is generated once (ed25519, mode 0600) and read back on every later start; a key
that cannot be read stops the start-up instead of being replaced, because clients pin it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import weakref
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from asyncssh.encryption import get_default_encryption_algs
from sqlmodel import col, select

from ingestd import errors
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.models import Campaign, SftpUser
from sftp_server.auth import Defender, SftpAuthServer
from sftp_server.handler import LandingSftpServer
from sftp_server.jail import Jail
from sftp_server.recording import ChangeSink
from sftp_server.session import SftpSession
from sftp_server.upload import clear_incoming

log = logging.getLogger(__name__)

# AES-GCM has hardware support on the target CPUs and beats chacha20 there.
PREFERRED_CIPHER = "aes128-gcm@openssh.com"



@dataclass
class _Listener:
    """What stop_sftp_server must end besides the acceptor."""

    connections: set[asyncssh.SSHServerConnection]
    changes: ChangeSink


_listeners: weakref.WeakKeyDictionary[asyncssh.SSHAcceptor, _Listener]
_listeners = weakref.WeakKeyDictionary()


async def start_sftp_server(settings: Settings, db: Database, changes: ChangeSink, *,
                            defender: Defender | None = None, prepare: bool = True,
                            reuse_port: bool = False) -> asyncssh.SSHAcceptor:
    """Listen on ``sftp.host``/``sftp.port``; ``acceptor.get_port()`` gives the real port.

    The sessions hand their landing changes to ``changes`` (a
    :class:`~sftp_server.recording.ChangeQueue` records them); :func:`stop_sftp_server` closes
    it after the last session ended.
    ``prepare``: create the landing tree and clear ``incoming/`` first
    (:func:`prepare_sftp_folders`; pass False when several servers share the folders and it was
    done once before).
    ``reuse_port``: several processes listen on the same port and the kernel spreads the
    connections over them.
    """
    key = await asyncio.to_thread(load_or_create_host_key, settings.host_key_path)
    if prepare:
        await asyncio.to_thread(prepare_sftp_folders, settings)
    sftp = settings.sftp
    guard = defender or Defender(threshold=sftp.defender_threshold,
                                 window_seconds=sftp.defender_window_seconds,
                                 ban_seconds=sftp.defender_ban_seconds)
    sessions = _SessionFactory(settings, db, changes)
    live: set[asyncssh.SSHServerConnection] = set()
    acceptor = await asyncssh.listen(
        settings.sftp.host, settings.sftp.port,
        server_host_keys=[key],
        server_factory=lambda: _SftpConnection(db, guard, live, sessions.open_session),
        agent_forwarding=False, x11_forwarding=False,
        encryption_algs=preferred_ciphers(), reuse_port=reuse_port or None,
        line_editor=False,  # SFTP only: no terminal, so no editor between channel and session
    )
    _listeners[acceptor] = _Listener(live, changes)
    log.info("sftp_server_started host=%s port=%d fingerprint=%s", settings.sftp.host,
             acceptor.get_port(), key.get_fingerprint())
    return acceptor


async def stop_sftp_server(acceptor: asyncssh.SSHAcceptor) -> None:
    """Stop listening and end every open session (uploads still open are discarded), then
    hand on what the sessions left queued."""
    acceptor.close()
    await acceptor.wait_closed()
    listener = _listeners.pop(acceptor, None)
    connections = list(listener.connections) if listener else []
    for conn in connections:
        conn.close()
    for conn in connections:
        await conn.wait_closed()
    if listener is not None:
        await listener.changes.aclose()
    log.info("sftp_server_stopped connections_closed=%d", len(connections))


async def changes_recorded(acceptor: asyncssh.SSHAcceptor) -> None:
    """Wait until every landing change the listener's sessions made so far is recorded."""
    listener = _listeners.get(acceptor)
    if listener is not None:
        await listener.changes.recorded()


def load_or_create_host_key(path: str | Path) -> asyncssh.SSHKey:
    """The server's private key at ``path``, generated (ed25519, 0600) the first time."""
    path = Path(path)
    if not path.exists():
        _create_host_key(path)
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise errors.ConfigError(
            f"the SFTP host key {path} cannot be read ({exc}); it is not replaced because "
            "clients trust it: restore it, or delete it to accept a new one") from exc


def _create_host_key(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then hard-linked: the key appears whole or not at all, and a key made at
    # the same moment by another process is never overwritten.
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
            log.info("host_key_created path=%s fingerprint=%s", path, key.get_fingerprint())
    finally:
        draft.unlink()


def preferred_ciphers() -> list[str]:
    """asyncssh's default ciphers with the fastest one on this hardware first."""
    names = [alg.decode("ascii") for alg in get_default_encryption_algs()]
    return [PREFERRED_CIPHER] + [name for name in names if name != PREFERRED_CIPHER]


def prepare_sftp_folders(settings: Settings) -> None:
    """Create the landing tree and delete uploads a previous run left in ``incoming/``."""
    settings.landing_path.mkdir(parents=True, exist_ok=True)
    clear_incoming(settings.incoming_path)


def allowed_slugs(db: Database, username: str) -> frozenset[str]:
    """The campaign folders ``username`` may see: its listed slugs (all if none), not archived."""
    with db.session() as session:
        user = session.get(SftpUser, username)
        if user is None:
            return frozenset()
        query = select(Campaign.slug).where(col(Campaign.archived).is_(False))
        if user.campaigns:
            query = query.where(col(Campaign.slug).in_(user.campaigns))
        return frozenset(session.exec(query).all())


class _SftpConnection(SftpAuthServer):
    """One client connection: authenticated by the parent, each session an SFTP session.

    Shells, commands and scp are refused, as ``listen(sftp_factory=…)`` refuses them.
    """

    def __init__(self, db: Database, defender: Defender,
                 live: set[asyncssh.SSHServerConnection],
                 sftp_factory: asyncssh.SFTPServerFactory) -> None:
        super().__init__(db, defender, live)
        self.sftp_factory = sftp_factory

    def session_requested(self) -> SftpSession:
        return SftpSession(self.sftp_factory)


class _SessionFactory:
    """Builds the SFTP server of a session once the user is known (DB read off the loop)."""

    def __init__(self, settings: Settings, db: Database, changes: ChangeSink) -> None:
        self.settings = settings
        self.db = db
        self.changes = changes

    async def open_session(self, chan: asyncssh.SSHServerChannel) -> LandingSftpServer:
        username = str(chan.get_extra_info("username") or "")
        slugs = await asyncio.to_thread(allowed_slugs, self.db, username)
        jail = Jail(self.settings.landing_path, slugs)
        log.info("sftp_session_started username=%s campaigns=%s", username, sorted(slugs))
        return LandingSftpServer(chan, jail, self.settings.incoming_path, self.changes)
