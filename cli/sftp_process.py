"""The SFTP server in processes of its own: how the SFTP side gets cores of its own.

One Python process runs on one core at a time. In one process the SFTP sessions, the sweeper's
routing and imports and the pipeline workers would take turns on that core, and every small
upload would wait behind an import. So ``ingestd serve`` runs the SFTP server in
``sftp.processes`` child processes (default "auto": one per core, at most 8) that do nothing
else; the sweeper, imports, workers and the HTTP API stay in the main process, which records
what the children report (below) as file rows; from there the sweeper takes over, as the parts
always hand work over.

With more than one process, all of them listen on the same port (``SO_REUSEPORT``): the kernel
spreads new connections over them. Failed logins are counted for all of them in one place: each
child reports its failures to the main process, whose one
:class:`~sftp_server.auth.Defender` scores them and tells every child of a ban (below), so an
address gets the same number of tries however many processes serve it.

The children do not write landing rows themselves: each landing change (a file landed, a path
reopened for writing, a file removed) goes to the main process as one line, and the main
process records them in order (the daemon hands them to one
:class:`~sftp_server.recording.ChangeQueue`, which wakes the sweeper). A database transaction
in the child cost more CPU than the SFTP exchange of a small upload, and the child's event loop
waited for its thread (the GIL) while the client waited for its answers; a line on a pipe costs
a few microseconds. The change is in the pipe before the client hears "ok", so nothing is lost
that the daemon's own crash would not lose anyway, and a file in the landing tree without a
row is what the sweeper's start-up walk records.

The wire between the main process and a child is its stdin and stdout:

- the main process writes the settings (JSON, one line), then ``ban <json>`` for each address
  its defender bans (the child refuses it for that long), and keeps stdin open: it is the
  child's lifeline. When the main process ends — even by ``kill -9`` — the child reads EOF and
  stops like on SIGTERM: uploads still open are discarded.
- the child writes ``sftp-port <port>`` once it listens, then ``change <json>`` for each
  landing change (:func:`encode_change`) and ``failure <json>`` for each failed login.

A failure is on its way to the main process before the client hears that its login failed, and
a ban reaches every child within milliseconds; an address can slip in only the attempts it
starts in between.

Run as ``python -m cli.sftp_process`` by :func:`start_sftp_processes`, never by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import uvloop

from ingestd import errors
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.landing import LandingChange
from ingestd.models import CallSource
from sftp_server.auth import Defender
from sftp_server.server import (
    load_or_create_host_key,
    prepare_sftp_folders,
    start_sftp_server,
    stop_sftp_server,
)

log = logging.getLogger("ingestd.sftp_process")
PORT_LINE = b"sftp-port "
CHANGE_LINE = b"change "
FAILURE_LINE = b"failure "
BAN_LINE = b"ban "
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 25.0


@dataclass
class SftpProcesses:
    """The running SFTP children and the defender they share; :meth:`stop` ends them."""

    port: int
    defender: Defender
    children: list[asyncio.subprocess.Process] = field(default_factory=list)
    relays: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False

    def ban(self, address: str, seconds: float) -> None:
        """Tell every child to refuse ``address`` for ``seconds`` (the defender decided)."""
        line = BAN_LINE + _json_line({"address": address, "seconds": seconds})
        for child in self.children:
            if child.stdin is not None and not child.stdin.is_closing():
                child.stdin.write(line)

    async def stop(self) -> None:
        """Close each child's lifeline and wait for it to stop (killed after a grace time)."""
        self.stopping = True
        for child in self.children:
            if child.stdin is not None:
                child.stdin.close()
        for child in self.children:
            try:
                await asyncio.wait_for(child.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error("sftp_process_killed pid=%d reason=did not stop in %.0f s",
                          child.pid, STOP_TIMEOUT_SECONDS)
                child.kill()
                await child.wait()
        await asyncio.gather(*self.relays, return_exceptions=True)


async def start_sftp_processes(settings: Settings, report: Callable[[LandingChange], None],
                               on_died: Callable[[str], None]) -> SftpProcesses:
    """Start ``sftp.process_count`` children listening on ``sftp.host``/``sftp.port``.

    ``report`` runs on this loop for each landing change a child made, in the order the child
    made them; ``on_died`` with a reason when a child ends while the daemon is not stopping.
    """
    # Once, before any child listens: a second child clearing incoming/ at its start would
    # delete the first one's uploads in progress.
    await asyncio.to_thread(load_or_create_host_key, settings.host_key_path)
    await asyncio.to_thread(prepare_sftp_folders, settings)
    sftp = settings.sftp
    count = sftp.process_count
    running = SftpProcesses(port=sftp.port, defender=Defender(
        threshold=sftp.defender_threshold, window_seconds=sftp.defender_window_seconds,
        ban_seconds=sftp.defender_ban_seconds, on_ban=lambda address, seconds:
        running.ban(address, seconds)))
    try:
        for _ in range(count):
            # The first child may be given port 0: the others take the port it got.
            child, running.port = await _spawn(settings, running.port, reuse_port=count > 1)
            running.children.append(child)
            running.relays.append(asyncio.create_task(_relay(child, running, report,
                                                             on_died)))
    except BaseException:
        await running.stop()
        raise
    return running


async def _spawn(settings: Settings, port: int,
                 reuse_port: bool) -> tuple[asyncio.subprocess.Process, int]:
    sftp = settings.sftp.model_copy(update={"port": port})
    own = settings.model_copy(update={"sftp": sftp})
    args = [sys.executable, "-m", "cli.sftp_process"] + (["--reuse-port"] if reuse_port else [])
    child = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(own.model_dump_json().encode("utf-8") + b"\n")
    await child.stdin.drain()
    try:
        line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_SECONDS)
    except TimeoutError:
        line = b""
    if not line.startswith(PORT_LINE):
        with suppress(ProcessLookupError):
            child.kill()
        code = await child.wait()
        raise errors.ConfigError(
            f"the SFTP server did not start on {settings.sftp.host}:{port} (exit code {code}; "
            "its reason is logged above)")
    return child, int(line[len(PORT_LINE):])


async def _relay(child: asyncio.subprocess.Process, running: SftpProcesses,
                 report: Callable[[LandingChange], None], on_died: Callable[[str], None]) -> None:
    assert child.stdout is not None
    while line := await child.stdout.readline():
        if line.startswith(CHANGE_LINE):
            report(decode_change(line[len(CHANGE_LINE):]))
        elif line.startswith(FAILURE_LINE):
            failure = json.loads(line[len(FAILURE_LINE):])
            running.defender.record_failure(failure["address"], failure["unknown_user"])
    code = await child.wait()
    if not running.stopping:
        on_died(f"the SFTP server process {child.pid} ended (exit code {code})")


def encode_change(change: LandingChange) -> bytes:
    """One landing change as a JSON line (paths may hold any character, newlines too)."""
    return _json_line(vars(change))  # its fields (``asdict`` deep-copies them: 3x the time)


def _json_line(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, ensure_ascii=True).encode("ascii") + b"\n"


def decode_change(line: bytes) -> LandingChange:
    """The change :func:`encode_change` wrote."""
    fields = json.loads(line)
    fields["source"] = CallSource(fields["source"])
    return LandingChange(**fields)


# The child ----------------------------------------------------------------------------------

class ForwardedChanges:
    """The child's change sink: each change goes to the main process as one line on stdout,
    in order, before the session answers its client."""

    def submit(self, change: LandingChange, *,
               urgent: bool = False) -> asyncio.Future[str | None]:
        _tell(CHANGE_LINE + encode_change(change))
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # handed on; the row id is the main process's business
        return done

    async def recorded(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class ReportingDefender(Defender):
    """The child's defender: it scores nothing itself. Each failed login goes to the main
    process, whose defender scores those of every child; the bans it decides come back on
    stdin (:meth:`ban`)."""

    def record_failure(self, address: str, unknown_user: bool) -> None:
        _tell(FAILURE_LINE + _json_line({"address": address, "unknown_user": unknown_user}))


class Lifeline:
    """The child's stdin: the settings line, then ban lines; its end means the main process
    is gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = b""

    def read_line(self) -> bytes:
        """The next whole line, waiting for it (start-up only); b"" at the end."""
        while b"\n" not in self._pending:
            data = os.read(self.fd, 65536)
            if not data:
                return b""
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line + b"\n"

    def watch(self, defender: Defender, stop: asyncio.Event) -> None:
        """Loop reader: apply the bans that arrived; ``stop`` at the end of the lifeline."""
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:  # the main process closed it, or died
            stop.set()
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if line.startswith(BAN_LINE):
                ban = json.loads(line[len(BAN_LINE):])
                defender.ban(ban["address"], ban["seconds"])


def main() -> None:
    """Entry of a child: settings from stdin, serve until stdin closes or SIGTERM."""
    reuse_port = "--reuse-port" in sys.argv[1:]
    lifeline = Lifeline(sys.stdin.fileno())
    settings = Settings.model_validate_json(lifeline.read_line())
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        uvloop.run(_serve(settings, lifeline, reuse_port))
    except errors.IngestError as exc:
        print(f"ingestd: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # e.g. the port is taken
        print(f"ingestd: error: the SFTP server cannot listen: {exc}", file=sys.stderr)
        sys.exit(1)


async def _serve(settings: Settings, lifeline: Lifeline, reuse_port: bool) -> None:
    db = Database(settings.database_url)  # users, keys and campaigns: read only
    defender = ReportingDefender()
    acceptor = await start_sftp_server(settings, db, ForwardedChanges(), defender=defender,
                                       prepare=False, reuse_port=reuse_port)
    _tell(PORT_LINE + str(acceptor.get_port()).encode("ascii") + b"\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(lifeline.fd, lifeline.watch, defender, stop)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(lifeline.fd)
        await stop_sftp_server(acceptor)
        db.dispose()


def _tell(line: bytes) -> None:
    with suppress(BrokenPipeError):  # the main process is gone: the lifeline ends us soon
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
