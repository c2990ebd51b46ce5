"""The benchmark suite's own building blocks stay valid as the product changes.

Fast checks (a few seconds), not the benchmarks themselves (``bench/run --quick`` is the smoke
run): the synthetic recordings pass the real intake validation, the growth fixture fits the
real schema, the plan check flags a table scan and not an index search, the results table
reads external figures, a profile of the daemon and its SFTP processes is summarised per
process, the one-process SFTP row is reported as the scaling figure, and a run
that would fill its disk is refused before it starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import text

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import figures  # noqa: E402
import growth  # noqa: E402
import growth_fixture  # noqa: E402
import recordings  # noqa: E402
import sftp_throughput  # noqa: E402
import spy  # noqa: E402
import suite  # noqa: E402

from ingestd import audio, config  # noqa: E402
from ingestd.db import Database  # noqa: E402


def test_synthetic_recordings_pass_intake_validation(tmp_path):
    smallest = recordings.write_wav(tmp_path / "a.wav", recordings.smallest_valid_bytes(), 1)
    other = recordings.write_wav(tmp_path / "b.wav", recordings.smallest_valid_bytes(), 2)
    info = audio.validate(smallest, config.LimitsSettings())
    assert info.duration == pytest.approx(recordings.SMALLEST_VALID_SECONDS)
    assert (info.channels, info.sample_rate) == (1, 8000)
    assert smallest.read_bytes() != other.read_bytes()


def test_growth_fixture_fits_the_schema_and_plans_flag_scans(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    db = Database(url)
    db.migrate()
    growth_fixture.fill(db, growth_fixture.campaign(db), 2000)
    with db.engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("batches", "calls", "files")]
        waiting = conn.execute(text("SELECT count(*) FROM files WHERE status = 'DETECTED' "
                                    "AND batch_id = 'bat_open'")).scalar()
    assert counts == [3, 2000, 2040]
    assert waiting == 40
    _, scans = growth.explain(db, {"SELECT id FROM files WHERE reason = ?": ("x",),
                                   "SELECT id FROM files WHERE landing_path = ?": ("y",)})
    db.dispose()
    assert len(scans) == 1 and "reason" in scans[0]


def test_table_reads_external_figure_lines():
    output = 'noise\n{"figure": "x", "ingestd": 2.0, "unit": "MB", "peer": 4.0, "pass": true}\n'
    [fig] = figures.parse_external(output, "x.py")
    assert fig.ratio == 0.5
    assert "0.50x" in figures.table([fig])


def test_run_that_would_fill_the_disk_is_refused_before_it_starts(tmp_path, capsys):
    full = suite.parse_args([])
    # The SFTP shapes alone: 3 GB of sources, and each round's uploads kept on three servers.
    assert suite.disk_needed(suite.parse_args(["--only", "sftp"])) > 20 * suite.GB
    assert suite.disk_needed(suite.parse_args(["--quick"])) < suite.disk_needed(full) / 10
    over_the_free_space = suite.shutil.disk_usage(tmp_path).free // (1 << 20) + 1  # MiB
    code = suite.main(["--only", "sftp", "--workdir", str(tmp_path / "w"),
                       "--big-mib", str(over_the_free_space)])
    assert code == 2
    said = capsys.readouterr().err
    assert "GB free" in said and "--workdir on a larger disk" in said
    assert list((tmp_path / "w").iterdir()) == []  # nothing was written, nothing was started


def test_one_process_row_is_the_scaling_figure_not_a_judged_one():
    default = figures.Figure("SFTP (d) 8 clients", 350.0, "MB/s", peer=320.0,
                             target=">= 0.75x", passed=True)
    one = figures.Figure("SFTP (d) 8 clients with sftp.processes = 1", 227.0, "MB/s",
                         peer=380.0, target=">= 0.75x", passed=False, note="per round …")
    row = sftp_throughput._scaling_figure(one, default)
    assert (row.passed, row.target, round(row.ratio, 2)) == (None, "", 0.6)
    assert "auto over one process 1.54x" in row.note and row.note.endswith("per round …")


def test_profile_of_the_daemon_and_its_sftp_processes_is_summarised_apart():
    # py-spy names a process by its executable only: the frames tell an SFTP process apart.
    main, child = 'process 10:"/v/bin/python"', 'process 11:"/v/bin/python"'
    raw = "\n".join([
        f"{main};main (cli/app.py:1);import_files (batch/importer.py:9);fsync (os.py:1) 30",
        f"{main};main (cli/app.py:1);Runner.run (asyncio/runners.py:118) 900",  # uvloop idle
        f"{child};<module> (cli/sftp_process.py:5);answer (sftp_server/upload_requests.py:80) 60",
        f"{child};<module> (cli/sftp_process.py:5);Runner.run (asyncio/runners.py:118) 500",
    ])
    lines = spy.summarise(raw)
    assert lines[0] == "SFTP processes: 60 samples in product code; inclusive share per function:"
    assert "main process: 30 samples in product code; inclusive share per function:" in lines
    assert "  100.0%  answer (sftp_server/upload_requests.py:80)" in lines
