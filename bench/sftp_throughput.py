"""SFTP throughput, ingestd beside OpenSSH: same client (``sftp -b``), same cipher, same files.

Four shapes: (a) one big file, (b) many 1 MiB files, (c) many 4 KiB files, (d) several clients
at once. Each shape is uploaded in ``rounds`` (default 3) to each server, interleaved, each
round in another order (OpenSSH first in the first round, ingestd in the second…); after each
ingestd upload the bench waits until ingestd has imported every file (hash, store, rows), so no
upload overlaps another one's work. The figure of each side is its median round, so the ratio
compares them under the same conditions: single runs on this 2-core VM move by +-25 % and
more (one OpenSSH (c) run gave 827 files/s, the next 1488), with the machine's state, not the
server. Every round's figures are in the note, with the median server CPU per file (daemon plus
its ffprobe children; sshd plus its session processes).

A third server takes part in every round as calibration: a bare asyncssh SFTP server with no
ingestion work (``bare_asyncssh.py``). Its ratio to OpenSSH is the ceiling of ingestd's on the
machine of the run. ingestd runs with its default ``sftp.processes = "auto"`` (one SFTP process
per core); shape (d) is measured once more against a daemon with one SFTP process
(``sftp.processes = 1``): how the SFTP side scales past one core. That row is the scaling
figure, shown with its ratio to OpenSSH and what "auto" bought over it, without a target of its
own: the (d) target judges ingestd as shipped.

ingestd runs here with the duration limits opened (4 KiB files are 0.5 s long, the 1 GiB file
is over the default 500 MB size limit) so that every upload is imported, not rejected.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import recordings
from bare_asyncssh import BareAsyncssh
from daemon import BenchDaemon, cpu_seconds
from figures import Figure, at_least
from spy import sample
from sshd import LoopbackServer, OpenSshPeer, parallel_uploads

log = logging.getLogger("bench.sftp")
MIB = 1 << 20
# The (c) upload takes 4-5 s on the 2-core VMs: the sample is of the upload, not of the imports
# that go on after it.
PROFILE_SECONDS = 4
PROFILE_RATE = 250  # samples per second and thread: a few hundred in 4 s of the SFTP process
# 4 KiB files are 0.5 s long, the 1 GiB file is over the default 500 MB size limit.
LIMITS_OPENED = dict(limits__min_duration_seconds=0, limits__max_duration_seconds=10_000_000,
                     limits__max_file_bytes=4 << 30)
# Shapes of at most this many files are deleted right after they are measured (see _clear).
CLEAR_AT_ONCE = 10


@dataclass(frozen=True)
class Shape:
    key: str
    label: str
    files: int  # per client
    size: int
    clients: int
    target: float  # minimum ratio ingestd / OpenSSH

    @property
    def total_bytes(self) -> int:
        return self.files * self.size * self.clients


def shapes(quick: bool, big_mib: int | None = None) -> list[Shape]:
    scale = 10 if quick else 1
    big = (big_mib or (64 if quick else 1024)) * MIB
    return [
        Shape("a", f"(a) 1 x {big // MIB} MiB", 1, big, 1, 0.8),
        Shape("b", f"(b) {1000 // scale} x 1 MiB", 1000 // scale, MIB, 1, 0.75),
        Shape("c", f"(c) {5000 // scale} x 4 KiB", 5000 // scale, 4096, 1, 0.5),
        Shape("d", f"(d) 8 clients x {100 // scale} x 1 MiB", 100 // scale, MIB, 8, 0.75),
    ]


def disk_bytes(quick: bool, big_mib: int | None, rounds: int) -> int:
    """The most this benchmark holds on disk at once, at its end: every shape's source files,
    ingestd's imports of every round (both daemons'), and the peers' uploads of every round of
    the many-file shapes (deleted at the end, see ``_clear``)."""
    every = shapes(quick, big_mib)
    sources = sum(shape.total_bytes for shape in every)
    kept_by_peers = sum(shape.total_bytes for shape in every
                        if shape.files * shape.clients > CLEAR_AT_ONCE)
    parallel = next(shape for shape in every if shape.clients > 1)
    return sources + rounds * (sources + 2 * kept_by_peers + parallel.total_bytes)


def prepare(work: Path, shape: Shape) -> list[Path]:
    """One folder of distinct WAVs per client."""
    folders = []
    for client in range(shape.clients):
        folder = work / "files" / shape.key / f"client{client}"
        if not folder.exists():
            fmt = recordings.STUDIO if shape.size > 64 * MIB else recordings.TELEPHONY
            recordings.make_set(folder, shape.files, shape.size, seed=hash((shape.key, client)),
                                prefix=f"{shape.key}{client}", fmt=fmt)
        folders.append(folder)
    return folders


def _scripts(work: Path, side: str, folders: list[Path], dest_root: str) -> list[Path]:
    scripts = []
    for i, folder in enumerate(folders):
        dest = f"{dest_root}-c{i}"
        script = work / f"{side}-{folder.parent.name}-{i}.sftp"
        script.write_text("\n".join([f"-mkdir {dest}", f"cd {dest}", f"lcd {folder}",
                                     "put *"]) + "\n")
        scripts.append(script)
    return scripts


def run(work: Path, key: Path, quick: bool, big_mib: int | None = None,
        profile: bool = False, rounds: int = 3) -> list[Figure]:
    """Measure every shape against OpenSSH (and the bare asyncssh calibration server); one
    figure per shape plus import rates, then shape (d) again with one SFTP process.

    ``profile``: a py-spy sample of the daemon and its SFTP processes while it receives the
    small files (c), in the first round."""
    peer = OpenSshPeer(work / "sshd", key)
    bare = BareAsyncssh(work / "asyncssh", key)
    daemon = BenchDaemon(work / "ingestd", **LIMITS_OPENED)
    figures: list[Figure] = []
    peer.start()
    bare.start()
    try:
        _start(daemon, key)
        for shape in shapes(quick, big_mib):
            figures.extend(_measure(work, key, shape, peer, daemon, rounds,
                                    profile and shape.key == "c", bare))
            if shape.files * shape.clients <= CLEAR_AT_ONCE:
                _clear(peer.uploads, bare.uploads)  # the big file: its space back at once
        daemon.stop()
        # One Python process uses one core: what the default's processes bought over one.
        daemon = BenchDaemon(work / "ingestd-1", sftp__processes=1, **LIMITS_OPENED)
        _start(daemon, key)
        parallel = next(s for s in shapes(quick, big_mib) if s.clients > 1)
        one = _measure(work, key, parallel, peer, daemon, rounds, False, None,
                       " with sftp.processes = 1")[0]
        figures.append(_scaling_figure(one, next(f for f in figures
                                                 if f.name == f"SFTP {parallel.label}")))
    finally:
        daemon.stop()
        bare.stop()
        peer.stop()
        _clear(peer.uploads, bare.uploads)
    return figures


def _scaling_figure(one: Figure, default: Figure) -> Figure:
    """Shape (d) with one SFTP process, as the scaling figure: no target of its own (the
    shape's target judges ingestd as shipped, ``processes = "auto"``); the note says what the
    default's processes bought over one."""
    bought = (default.ingestd or 0) / one.ingestd if one.ingestd else None
    scaling = ("the scaling figure, not judged: the (d) target judges the default "
               "sftp.processes = \"auto\"; auto over one process "
               + (f"{bought:.2f}x" if bought is not None else "n/a"))
    return Figure(one.name, one.ingestd, one.unit, peer=one.peer,
                  note=f"{scaling}; {one.note}", details=one.details)


def _start(daemon: BenchDaemon, key: Path) -> None:
    """Serve, with the bench campaign (2 s window, no pipeline) and its SFTP user."""
    daemon.start()
    daemon.add_campaign("bench", "--batch-window", "2", "--no-auto-process", user_key=key)


@dataclass
class Round:
    """One upload of a shape to one server."""

    seconds: float
    cpu: float  # server CPU seconds during the upload
    imported_at: float | None = None  # ingestd: time.time() when every file was imported
    started: float = 0.0
    total_cpu: float = 0.0  # ingestd: server CPU seconds until every file was imported


def _measure(work: Path, key: Path, shape: Shape, peer: OpenSshPeer, daemon: BenchDaemon,
             rounds: int, profile: bool, bare: BareAsyncssh | None,
             variant: str = "") -> list[Figure]:
    log.info("sftp %s%s: preparing %d bytes of files", shape.label, variant, shape.total_bytes)
    folders = prepare(work, shape)
    os.sync()  # the new files' writeback must not fall into the first round's uploads
    count = shape.files * shape.clients
    peers: dict[str, LoopbackServer] = {"openssh": peer, **({"asyncssh": bare} if bare else {})}
    sides = ["openssh", "ingestd", *(["asyncssh"] if bare else [])]
    results: dict[str, list[Round]] = {side: [] for side in sides}
    profile_lines: list[str] = []
    for number in range(rounds):
        # Each round in another order: no server always goes first.
        for side in sides[number % len(sides):] + sides[:number % len(sides)]:
            if side == "ingestd":
                spied = profile_lines if profile and number == 0 else None
                result = _upload_ingestd(work, key, shape, daemon, folders, number, spied)
            else:
                result = _upload_peer(work, key, shape, peers[side], folders, number)
            results[side].append(result)
        log.info("sftp %s%s round %d: %s (ingestd all imported after %.2f s)", shape.label,
                 variant, number + 1,
                 ", ".join(f"{side} {results[side][-1].seconds:.2f} s" for side in sides),
                 (results["ingestd"][-1].imported_at or 0) - results["ingestd"][-1].started)
    ours, theirs = results["ingestd"], results["openssh"]
    failed = daemon.file_counts("bench/").get("FAILED", 0)
    mb = shape.total_bytes / 1e6
    ours_s, theirs_s = median(r.seconds for r in ours), median(r.seconds for r in theirs)
    note = (f"{count / ours_s:.3g} vs {count / theirs_s:.3g} files/s (median of {rounds} "
            f"interleaved rounds; per round ingestd/OpenSSH files/s: "
            + ", ".join(f"{count / o.seconds:.3g}/{count / t.seconds:.3g}"
                        for o, t in zip(ours, theirs, strict=True))
            + f"); server CPU per file {1000 * median(r.cpu for r in ours) / count:.2f} ms "
            f"during upload ({1000 * median(r.total_cpu for r in ours) / count:.2f} ms with "
            f"import) vs OpenSSH {1000 * median(r.cpu for r in theirs) / count:.2f} ms")
    if failed:
        note += f"; {failed} files FAILED import so far"
    to_imported = median(count / ((r.imported_at or 0) - r.started) for r in ours)
    figures = [
        Figure(f"SFTP {shape.label}{variant}", mb / ours_s, "MB/s", peer=mb / theirs_s,
               target=f">= {shape.target}x",
               passed=at_least(theirs_s / ours_s, shape.target), note=note,
               details=profile_lines),
        Figure(f"SFTP {shape.label}: upload to all imported", to_imported, "files/s",
               note="ingestd only: client start to the last file COMPLETED (median round)"),
    ]
    if bare is not None:
        plain = results["asyncssh"]
        plain_s = median(r.seconds for r in plain)
        figures.append(Figure(
            f"SFTP {shape.label}: bare asyncssh", mb / plain_s, "MB/s", peer=mb / theirs_s,
            note=f"calibration, not ingestd: asyncssh's SFTPServer with no ingestion work, "
                 f"the ceiling of ingestd's ratio here; server CPU per file "
                 f"{1000 * median(r.cpu for r in plain) / count:.2f} ms; per round "
                 f"asyncssh/OpenSSH files/s: "
                 + ", ".join(f"{count / p.seconds:.3g}/{count / t.seconds:.3g}"
                             for p, t in zip(plain, theirs, strict=True))))
    return figures


def _upload_peer(work: Path, key: Path, shape: Shape, server: LoopbackServer,
                 folders: list[Path], number: int) -> Round:
    """One round to OpenSSH or the bare asyncssh server, into folders of its own (kept until
    the benchmark ends)."""
    name = f"{shape.key}-r{number}"
    scripts = _scripts(work, f"{server.label.lower().replace(' ', '-')}-r{number}", folders,
                       server.client_path(name))
    server_cpu = cpu_seconds(server.pid)
    seconds = parallel_uploads(server.port, server.user, key, scripts)
    time.sleep(server.settle_seconds)
    server_cpu = cpu_seconds(server.pid) - server_cpu
    received = sum(p.stat().st_size for p in server.uploads.glob(f"{name}-c*/*") if p.is_file())
    if received != shape.total_bytes:
        raise RuntimeError(f"{server.label} received {received} of {shape.total_bytes} bytes")
    return Round(seconds, server_cpu)


def _upload_ingestd(work: Path, key: Path, shape: Shape, daemon: BenchDaemon,
                    folders: list[Path], number: int, profile_lines: list[str] | None) -> Round:
    """One round to ingestd, into scopes of its own (``bench/<shape>-r<n>-c<client>``), then
    the wait until all of it is imported."""
    count = shape.files * shape.clients
    scope = f"bench/{shape.key}-r{number}"
    daemon_cpu = cpu_seconds(daemon.pid)
    spy = threading.Thread(target=lambda: profile_lines.extend(
        sample(daemon.pid, PROFILE_SECONDS, rate=PROFILE_RATE, subprocesses=True)))
    if profile_lines is not None:
        spy.start()
    seconds = parallel_uploads(daemon.sftp_port, "bench", key,
                               _scripts(work, "ingestd", folders, "/" + scope))
    upload_cpu = cpu_seconds(daemon.pid) - daemon_cpu
    started = time.time() - seconds
    imported_at = daemon.wait_imported(scope + "-", count, timeout=1800)
    if profile_lines is not None:
        spy.join()
    return Round(seconds, upload_cpu, imported_at, started, cpu_seconds(daemon.pid) - daemon_cpu)


def _clear(*folders: Path) -> None:
    """Delete the peers' uploads. Only for a few files between shapes: on this VM's ext4 (no
    journal) every file created in the minute after thousands were deleted took 0.2-0.46 ms
    instead of 0.013 ms (the kernel passes over each recently freed inode: ``recently_deleted``
    in ``perf``), whichever server created it; so many-file shapes are deleted at the end."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
