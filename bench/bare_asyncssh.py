"""The calibration peer: asyncssh's own SFTP server with no ingestion work at all.

ingestd's SFTP side is asyncssh, so what a bare asyncssh server reaches beside OpenSSH in the
same run is the ceiling for ingestd's ratios on this machine: the part of a gap that is the
library's per-packet Python work, not ingestd's. It runs as ingestd's SFTP processes do (uvloop,
the same cipher, asyncssh's default window and packet size) and serves a chroot folder
with ``asyncssh.SFTPServer`` unchanged: no rows, no hashing, no events.

Run as ``python bare_asyncssh.py ROOT PORT HOST_KEY AUTHORIZED_KEYS`` by :class:`BareAsyncssh`.
"""

from __future__ import annotations

import asyncio
import shutil
import sys

from sshd import CIPHER, LoopbackServer, make_key


class BareAsyncssh(LoopbackServer):
    """A throwaway bare asyncssh SFTP server, rooted at its uploads folder."""

    label = "bare asyncssh"

    def client_path(self, name: str) -> str:
        return f"/{name}"

    def start(self) -> None:
        self.uploads.mkdir(parents=True, exist_ok=True)
        host_key = make_key(self.root / "ssh_host_ed25519_key")
        authorized = self.root / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", authorized)
        self._spawn([sys.executable, __file__, str(self.uploads), str(self.port), str(host_key),
                     str(authorized)])


async def _serve(root: str, port: int, host_key: str, authorized: str) -> None:
    import asyncssh

    class ChrootServer(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
            super().__init__(chan, chroot=root.encode())

    await asyncssh.listen("127.0.0.1", port, server_host_keys=[host_key],
                          authorized_client_keys=authorized, sftp_factory=ChrootServer,
                          allow_scp=False, encryption_algs=[CIPHER])
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
