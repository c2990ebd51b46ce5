"""The batch engine's pure decisions and the landing scan's per-file action."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch import detect, engine
from batch.engine import BatchView, FileView, Outcome
from ingestd.models import BatchStatus, FileKind, FileStatus, IngestFile

S = BatchStatus
F = FileStatus


def audio(name: str, status: FileStatus = F.COMPLETED) -> FileView:
    return FileView(id=f"fil_{name}", name=name, kind=FileKind.AUDIO, status=status)


@pytest.mark.parametrize(("mode", "status"), [("required", S.WAITING_FOR_CSV),
                                              ("optional", S.DETECTING)])
def test_csv_less_status(mode: str, status: BatchStatus) -> None:
    assert engine.csv_less_status(mode) == status


def test_csv_batch_processes_as_soon_as_every_named_file_is_there() -> None:
    assert engine.awaited(["a", "b", "c"], {"b"}) == ["a", "c"]
    assert engine.csv_batch_status(engine.awaited(["a", "b"], ["a"])) == S.WAITING_FOR_FILES
    assert engine.csv_batch_status(engine.awaited(["a", "b"], ["b", "a", "x"])) == S.PROCESSING


@pytest.mark.parametrize(("name", "reason"), [
    ("notes.TXT", "unsupported file type .txt"),
    ("setup.exe", "unsupported file type .exe"),
    ("README", "unsupported file type (no extension)"),
])
def test_skip_reason(name: str, reason: str) -> None:
    assert engine.skip_reason(name) == reason


def test_audio_joins_the_oldest_waiting_csv_batch_that_names_it_and_lacks_it() -> None:
    batches = [
        BatchView("b1", S.WAITING_FOR_FILES, True, ("a.mp3",), frozenset({"a.mp3"})),
        BatchView("b2", S.DETECTING, False),
        BatchView("b3", S.WAITING_FOR_FILES, True, ("a.mp3", "b.mp3")),
        BatchView("b4", S.WAITING_FOR_FILES, True, ("a.mp3",)),
    ]
    assert engine.csv_batch_for("a.mp3", batches) == "b3"
    assert engine.csv_batch_for("c.mp3", batches) is None
    assert engine.csv_less_batch(batches) == "b2"
    assert engine.csv_less_batch(batches[:1]) is None


def test_takeover_binds_named_audio_and_moves_the_rest() -> None:
    files = [audio("a", F.DETECTED), audio("b", F.DETECTED),
             FileView("fil_t", "a", FileKind.OTHER, F.SKIPPED)]
    bound, moved = engine.takeover_split(["a", "z"], files)
    assert (bound, moved) == (["fil_a"], ["fil_b", "fil_t"])


@pytest.mark.parametrize(("batch", "mode", "outcome"), [
    (BatchView("b", S.DETECTING, False), "optional", Outcome(S.PROCESSING)),
    (BatchView("b", S.WAITING_FOR_CSV, False), "required",
     Outcome(S.FAILED, "CSV required but none arrived within the batch window")),
    (BatchView("b", S.WAITING_FOR_FILES, True, ("a", "b", "c"), frozenset({"b"})), "required",
     Outcome(S.PROCESSING, missing=("a", "c"))),
])
def test_at_deadline(batch: BatchView, mode: str, outcome: Outcome) -> None:
    assert engine.at_deadline(batch, mode) == outcome


def test_closing_outcomes() -> None:
    csv = FileView("fil_csv", "m.csv", FileKind.CSV, F.COMPLETED)
    done = engine.closing([csv, audio("a"), audio("b")], [])
    assert done == Outcome(S.COMPLETED)
    partly = engine.closing([audio("a"), audio("b", F.FAILED), audio("c", F.DUPLICATE)], ["d"])
    assert partly.status == S.INCOMPLETE
    assert partly.reason == "1 of 4 files imported; 1 failed, 1 duplicate, 1 missing (d)"
    assert partly.missing == ("d",)
    rejected = engine.closing([audio("a", F.FAILED), audio("b", F.SKIPPED)], [])
    assert rejected.status == S.FAILED
    assert rejected.reason == "nothing imported: every file was rejected (1 failed, 1 skipped)"
    nothing = engine.closing([csv], ["a"])
    assert (nothing.status, nothing.reason) == (S.FAILED, "nothing imported: 1 missing (a)")


statuses = st.sampled_from(list(FileStatus))


@given(st.lists(statuses, max_size=8), st.lists(st.text(min_size=1), max_size=3))
def test_closing_is_completed_exactly_when_everything_was_imported(
        file_statuses: list[FileStatus], missing: list[str]) -> None:
    files = [audio(str(i), s) for i, s in enumerate(file_statuses)]
    if not engine.is_finished(files):
        assert any(s in (F.DETECTED, F.MATCHED, F.PROCESSING) for s in file_statuses)
        return
    outcome = engine.closing(files, missing)
    imported = file_statuses.count(F.COMPLETED)
    everything = bool(files) and imported == len(files) and not missing
    assert (outcome.status == S.COMPLETED) == everything
    assert (outcome.status == S.FAILED) == (imported == 0)
    assert (outcome.reason is None) == everything


def row(status: FileStatus, size: int = 10, mtime_ns: int | None = 5) -> IngestFile:
    now = datetime.now(UTC)
    return IngestFile(campaign_id="cmp_x", scope="acme", name="a.mp3", landing_path="acme/a.mp3",
                      kind="audio", status=status.value, size=size, mtime_ns=mtime_ns,
                      created_at=now, updated_at=now)


@pytest.mark.parametrize(("newest", "action"), [
    (None, detect.Action.RECORD),
    (row(F.DETECTED), detect.Action.NOTHING),
    (row(F.MATCHED, size=9), detect.Action.REFRESH),
    (row(F.DETECTED, mtime_ns=4), detect.Action.REFRESH),
    (row(F.DETECTED, mtime_ns=None), detect.Action.NOTHING),
    (row(F.COMPLETED), detect.Action.CLEAN_UP),
    (row(F.SKIPPED), detect.Action.CLEAN_UP),
    (row(F.COMPLETED, mtime_ns=4), detect.Action.RECORD),
    (row(F.FAILED, size=11), detect.Action.RECORD),
])
def test_landing_action(newest: IngestFile | None, action: detect.Action) -> None:
    entry = detect.LandingEntry("acme/a.mp3", size=10, mtime_ns=5)
    assert detect.action_for(entry, newest) == action
