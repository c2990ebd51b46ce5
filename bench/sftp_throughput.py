"""SFTP throughput, ingestd beside OpenSSH: same client (``sftp -b``), same cipher, same files.

Four shapes: (a) one big file, (b) many 1 MiB files, (c) many 4 KiB files, (d) several clients
at once. Each shape goes first to the private sshd, then to ingestd; then the bench waits until
ingestd has imported every file (hash, store, rows), so one shape's work never overlaps the next
shape's measurement. The figure is the client's wall time; the server CPU per file (daemon plus
its ffprobe children; sshd plus its session processes) is in the note.

ingestd runs here with the duration limits opened (4 KiB files are 0.5 s long, the 1 GiB file
is over the default 500 MB size limit) so that every upload is imported, not rejected.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import recordings
from daemon import BenchDaemon, cpu_seconds
from figures import Figure, at_least
from spy import sample
from sshd import OpenSshPeer, parallel_uploads

log = logging.getLogger("bench.sftp")
MIB = 1 << 20
PROFILE_SECONDS = 10


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
        profile: bool = False) -> list[Figure]:
    """Measure every shape against both servers; one figure per shape plus import rates.

    ``profile``: a py-spy sample of the daemon while it receives the small files (c)."""
    peer = OpenSshPeer(work / "sshd", key)
    daemon = BenchDaemon(work / "ingestd", limits__min_duration_seconds=0,
                         limits__max_duration_seconds=10_000_000,
                         limits__max_file_bytes=4 << 30)
    peer.start()
    daemon.start()
    figures: list[Figure] = []
    try:
        daemon.add_campaign("bench", "--batch-window", "2", "--no-auto-process", user_key=key)
        for shape in shapes(quick, big_mib):
            figures.extend(_measure(work, key, shape, peer, daemon,
                                    profile and shape.key == "c"))
    finally:
        daemon.stop()
        peer.stop()
    return figures


def _measure(work: Path, key: Path, shape: Shape, peer: OpenSshPeer,
             daemon: BenchDaemon, profile: bool) -> list[Figure]:
    log.info("sftp %s: preparing %d bytes of files", shape.label, shape.total_bytes)
    folders = prepare(work, shape)
    count = shape.files * shape.clients
    sshd_cpu = cpu_seconds(peer.proc.pid)
    peer_s = parallel_uploads(peer.port, peer.user, key,
                              _scripts(work, "peer", folders, str(peer.uploads / shape.key)))
    time.sleep(1)  # the session processes exit (and are reaped into the listener's CPU) after
    sshd_cpu = cpu_seconds(peer.proc.pid) - sshd_cpu
    received = sum(p.stat().st_size for p in peer.uploads.rglob("*") if p.is_file())
    if received != shape.total_bytes:
        raise RuntimeError(f"OpenSSH received {received} of {shape.total_bytes} bytes")
    _clear(peer.uploads)
    log.info("sftp %s: OpenSSH %.2f s", shape.label, peer_s)
    daemon_cpu = cpu_seconds(daemon.pid)
    profile_lines: list[str] = []
    spy = threading.Thread(target=lambda: profile_lines.extend(sample(daemon.pid,
                                                                       PROFILE_SECONDS)))
    if profile:
        spy.start()
    ours_s = parallel_uploads(daemon.sftp_port, "bench", key,
                              _scripts(work, "ingestd", folders, f"/bench/{shape.key}"))
    upload_cpu = cpu_seconds(daemon.pid) - daemon_cpu
    started = time.time() - ours_s
    imported_at = daemon.wait_imported(f"bench/{shape.key}", count, timeout=1800)
    if profile:
        spy.join()
    total_cpu = cpu_seconds(daemon.pid) - daemon_cpu
    failed = daemon.file_counts(f"bench/{shape.key}").get("FAILED", 0)
    log.info("sftp %s: ingestd %.2f s, all imported after %.2f s", shape.label, ours_s,
             imported_at - started)
    mb = shape.total_bytes / 1e6
    ours, theirs = mb / ours_s, mb / peer_s
    note = (f"{count / ours_s:.3g} vs {count / peer_s:.3g} files/s; server CPU per file "
            f"{1000 * upload_cpu / count:.2f} ms during upload ({1000 * total_cpu / count:.2f} ms "
            f"with import) vs OpenSSH {1000 * sshd_cpu / count:.2f} ms")
    if failed:
        note += f"; {failed} files FAILED import"
    return [
        Figure(f"SFTP {shape.label}", ours, "MB/s", peer=theirs, target=f">= {shape.target}x",
               passed=at_least(ours / theirs, shape.target), note=note,
               details=profile_lines),
        Figure(f"SFTP {shape.label}: upload to all imported", count / (imported_at - started),
               "files/s", note="ingestd only: client start to the last file COMPLETED"),
    ]


def _clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
