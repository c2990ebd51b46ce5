"""``bench/run``: every benchmark in one go, one table at the end.

Progress goes to stderr, the table to stdout; ``--markdown FILE`` also writes the header
(date, machine, versions), the table and the plans/profiles as Markdown (the body of
``bench/RESULTS.md``). A benchmark that breaks is reported as a failed figure with its error and
the run goes on, so an unattended run always ends with a table.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import figures
from figures import Figure

log = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = ("sftp", "detection", "scale", "growth", "pipeline", "memory", "external")
GB = 1_000_000_000
# What the other benchmarks keep in the work dir (deleted only at the end of the run), at full
# size, rounded up from a run's du (session 9): 20,000 recordings and their imports; the 1 M-row
# SQLite fixture; the 500 MB recording and its import; the HTTP upload's (in the same /tmp).
DISK_BYTES_FULL = {"detection": GB // 10, "scale": 2 * GB, "growth": 3 * GB // 2,
                   "pipeline": GB // 10, "memory": 3 * GB // 2, "external": 3 * GB // 2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", action="append", choices=BENCHMARKS,
                        help="run only these benchmarks (repeatable)")
    parser.add_argument("--workdir", type=Path, help="keep work files here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the work dir")
    parser.add_argument("--markdown", type=Path, help="also write the results as Markdown")
    parser.add_argument("--big-mib", type=int, help="size of SFTP shape (a) in MiB")
    parser.add_argument("--sftp-rounds", type=int,
                        help="SFTP: interleaved rounds per shape and server (median counts)")
    parser.add_argument("--batches", type=int, help="detection latency: batches per setting")
    parser.add_argument("--scale-files", type=int, help="batch scale: files in the batch")
    parser.add_argument("--scale-timeout", type=float, default=600.0,
                        help="batch scale: give up after this many seconds")
    parser.add_argument("--growth-rows", type=int, help="growth: files and calls in the fixture")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/"
                        "ingestd_bench", help="growth on PostgreSQL (its schema is DROPPED)")
    parser.add_argument("--pipeline-calls", type=int, help="pipeline: calls per worker count")
    parser.add_argument("--memory-mb", type=int, help="memory: upload size in MB")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy samples of the daemon: SFTP (c) upload, batch scale")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace, work: Path, key: Path) -> dict[str, Callable[[], list]]:
    """The benchmarks, each a no-argument callable returning figures (imported lazily)."""
    quick = args.quick

    def sftp() -> list[Figure]:
        import sftp_throughput
        return sftp_throughput.run(work / "sftp", key, quick, args.big_mib, args.profile,
                                   sftp_rounds(args))

    def detection() -> list[Figure]:
        import detection as bench
        return bench.run(work / "detection", args.batches or (20 if quick else 100))

    def scale() -> list[Figure]:
        import batch_scale
        return batch_scale.run(work / "scale", args.scale_files or (500 if quick else 20_000),
                               args.scale_timeout, args.profile)

    def growth() -> list[Figure]:
        import growth as bench
        return bench.run(work / "growth", args.growth_rows or (20_000 if quick else 1_000_000),
                         args.pg_url)

    def pipeline() -> list[Figure]:
        import pipeline_rate
        return pipeline_rate.run(work / "pipeline", args.pipeline_calls or (20 if quick else 200))

    def memory() -> list[Figure]:
        import memory as bench
        return bench.run(work / "memory", key, args.memory_mb or (100 if quick else 500))

    def external() -> list[Figure]:
        return run_external(quick)

    return {"sftp": sftp, "detection": detection, "scale": scale, "growth": growth,
            "pipeline": pipeline, "memory": memory, "external": external}


def run_external(quick: bool) -> list[Figure]:
    """Standalone scripts other parts of the project own (``api_upload.py``, ``wer.py``)."""
    found: list[Figure] = []
    for name, quick_args in (("api_upload.py", ["--mb", "100"]), ("wer.py", [])):
        script = BENCH_DIR / name
        if not script.exists():
            log.info("external %s: not present, skipped", name)
            continue
        log.info("external %s", name)
        argv = [sys.executable, str(script), *(quick_args if quick else [])]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        parsed = figures.parse_external(result.stdout, name)
        if not parsed and name == "api_upload.py":
            parsed = figures.api_upload_figures(result.stdout)
        if result.returncode != 0 or not parsed:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            # No figure lines: the script's own output goes under the table as it printed it.
            parsed.append(Figure(f"{name}", None, "", passed=False if result.returncode else None,
                                 note=f"exit {result.returncode}: {tail[0][:200]}",
                                 details=result.stdout.strip().splitlines()[-60:]))
        found.extend(parsed)
    return found


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # A SIGTERM ends the run through every benchmark's ``finally``: the daemons and the sshd
    # it started are stopped, not left running in the background (as a killed run once did).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for chatty in ("paramiko", "alembic", "asyncssh", "batch", "ingestd", "pipeline"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ingestd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    short = _disk_shortfall(args, work)
    if short:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        print(f"bench/run: {short}", file=sys.stderr)
        return 2
    header = figures.machine()
    log.info("work dir %s; %s", work, header["machine"])
    from sshd import make_key
    key = make_key(work / "client_ed25519")
    results: list[Figure] = []
    started = time.monotonic()
    try:
        for name, bench in plan(args, work, key).items():
            if args.only and name not in args.only:
                continue
            results.extend(_run_one(name, bench))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(figures.table(results))
    extra = figures.details(results)
    if extra:
        log.info("plans and profiles:\n%s", extra)
    if args.markdown:
        write_markdown(args.markdown, header, results, elapsed, args.quick)
    return 0


def sftp_rounds(args: argparse.Namespace) -> int:
    """Rounds per SFTP shape and server: ``--sftp-rounds``, else 3 (1 with ``--quick``)."""
    return args.sftp_rounds or (1 if args.quick else 3)


def disk_needed(args: argparse.Namespace) -> int:
    """Bytes the selected benchmarks hold in the work dir at their peak, all together (the
    work dir is deleted only at the end of the run)."""
    import sftp_throughput
    needed = 0
    for name in args.only or BENCHMARKS:
        if name == "sftp":
            needed += sftp_throughput.disk_bytes(args.quick, args.big_mib, sftp_rounds(args))
        else:
            needed += DISK_BYTES_FULL[name] // (10 if args.quick else 1)
    return needed


def _disk_shortfall(args: argparse.Namespace, work: Path) -> str:
    """Why the run would fill its disk part-way (as a run once did, its uploads failing with
    "no space"), or '' when the work dir's file system has room."""
    needed, free = disk_needed(args), shutil.disk_usage(work).free
    if free >= needed:
        return ""
    return (f"the work dir {work} has {free / GB:.1f} GB free; this run needs about "
            f"{needed / GB:.1f} GB (the SFTP shapes keep every round's uploads until the end). "
            "Free some space, pass --workdir on a larger disk, or run fewer benchmarks "
            "(--only, --quick).")


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_one(name: str, bench: Callable[[], list[Figure]]) -> list[Figure]:
    log.info("=== %s", name)
    began = time.monotonic()
    try:
        found = bench()
    except Exception as exc:
        log.error("%s broke:\n%s", name, traceback.format_exc())
        found = [Figure(name, None, "", passed=False, note=f"benchmark broke: {exc}")]
    log.info("=== %s done in %.0f s", name, time.monotonic() - began)
    return found


def write_markdown(path: Path, header: dict[str, str], results: list[Figure], elapsed: float,
                   quick: bool) -> None:
    lines = [f"- **{k}**: {v}" for k, v in header.items()]
    lines.append(f"- **run**: `bench/run{' --quick' if quick else ''}`, {elapsed / 60:.1f} min")
    body = ["## Run", "", *lines, "", "## Figures", "", figures.table(results, markdown=True)]
    extra = figures.details(results)
    if extra:
        body += ["", "## Plans and profiles", "", extra]
    path.write_text("\n".join(body) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
