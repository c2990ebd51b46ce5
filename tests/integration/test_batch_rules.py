"""One test per rule of SPEC §3 "Batches", "CSV manifest" and "Agents, duplicates", each named
after its rule, plus the operator's ``cancel`` and ``retry``. Real intake (ffmpeg) on small
synthetic WAVs; SQLite and PostgreSQL; a manual clock for batch windows."""

from __future__ import annotations

import io
import math
import wave

import pytest
from conftest import make_campaign
from sqlalchemy import text
from sqlmodel import select
from test_batch_sweeper import Rig, only, rig  # noqa: F401 - rig is a fixture

from batch import control, routing
from ingestd import errors
from ingestd.clock import ManualClock
from ingestd.models import Agent, Campaign, IngestFile

HEADER = "file_name,agent_code,call_date,client_reference,call_type"
WINDOW = 60


def tone(seed: int, seconds: float = 11.0) -> bytes:
    """A valid 8 kHz mono PCM WAV whose bytes differ for every ``seed``."""
    frames = bytearray()
    step = 2 * math.pi * (200 + 37 * seed) / 8000
    for i in range(int(8000 * seconds)):
        frames += int(8000 * math.sin(i * step)).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(frames))
    return out.getvalue()


def manifest(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def statuses(scoped: Rig) -> dict[str, str]:
    return {name: f.status for name, f in scoped.files().items()}


@pytest.fixture
def acme(rig: Rig, clock: ManualClock) -> Rig:  # noqa: F811
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW)
    return rig


def test_csv_arriving_while_csvless_batch_open_takes_it_over_and_moves_unnamed_files_out(
        acme: Rig, clock: ManualClock) -> None:
    acme.land(tone(1), "a.wav")
    acme.land(tone(2), "b.wav")
    acme.tick()
    first = only(acme.batches())
    clock.advance(10)
    acme.land(manifest("a.wav,,,REF-A,inbound"), "m.csv")
    acme.tick()
    by_id = {b.id: b for b in acme.batches()}
    taken, fresh = by_id[first.id], next(b for b in by_id.values() if b.id != first.id)
    assert (taken.status, taken.csv_file) == ("COMPLETED", "m.csv")
    assert (fresh.status, fresh.csv_file, fresh.deadline) == ("DETECTING", None, first.deadline)
    files = acme.files()
    assert files["b.wav"].batch_id == fresh.id and files["b.wav"].status == "DETECTED"
    assert acme.calls()[files["a.wav"].call_id].meta == {"client_reference": "REF-A",
                                                          "call_type": "INBOUND"}
    with acme.db.session() as session:  # a moved file has no CSV row: SQL NULL, not JSON null
        unbound = session.execute(text("SELECT count(*) FROM files WHERE csv_row IS NULL "
                                       "AND name = 'b.wav'")).scalar_one()
    assert unbound == 1


def test_complete_csv_batch_processes_at_once_without_waiting_for_its_deadline(
        acme: Rig) -> None:
    acme.land(manifest("a.wav,,,,"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.tick()
    assert only(acme.batches()).status == "COMPLETED"


def test_several_csvs_in_one_scope_each_bind_the_files_they_name(acme: Rig) -> None:
    acme.land(manifest("a.wav,,,REF-A,", "b.wav,,,REF-B,"), "first.csv")
    acme.land(manifest("c.wav,,,REF-C,"), "second.csv")
    acme.tick()
    acme.land(tone(3), "c.wav")
    acme.land(tone(1), "a.wav")
    acme.tick()
    by_csv = {b.csv_file: b for b in acme.batches()}
    assert by_csv["second.csv"].status == "COMPLETED"
    assert by_csv["first.csv"].status == "WAITING_FOR_FILES"
    acme.land(tone(2), "b.wav")
    acme.tick()
    by_csv = {b.csv_file: b for b in acme.batches()}
    assert by_csv["first.csv"].status == "COMPLETED"
    files = acme.files()
    assert {files[n].batch_id for n in ("a.wav", "b.wav")} == {by_csv["first.csv"].id}
    assert acme.calls()[files["c.wav"].call_id].meta["client_reference"] == "REF-C"


def test_subfolders_are_scopes_with_batches_of_their_own(acme: Rig) -> None:
    acme.land(manifest("a.wav,,,,"), "m.csv", scope="acme/2026-01-15")
    acme.land(tone(1), "a.wav", scope="acme/2026-01-16")
    acme.tick()
    by_scope = {b.scope: b for b in acme.batches()}
    assert by_scope["acme/2026-01-15"].status == "WAITING_FOR_FILES"
    assert (by_scope["acme/2026-01-16"].status, by_scope["acme/2026-01-16"].csv_file) == (
        "DETECTING", None)


def test_named_file_arriving_after_its_batch_closed_is_imported_in_a_new_batch_with_its_row(
        acme: Rig, clock: ManualClock) -> None:
    acme.land(manifest("a.wav,,,REF-A,", "late.wav,,,REF-LATE,outbound"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.tick()
    clock.advance(WINDOW + 1)
    acme.tick()
    closed = only(acme.batches())
    assert (closed.status, closed.missing) == ("INCOMPLETE", ["late.wav"])
    acme.land(tone(2), "late.wav")
    acme.tick()
    earlier, late = acme.batches()
    assert (earlier.status, earlier.missing) == ("INCOMPLETE", [])
    assert (late.status, late.csv_file) == ("COMPLETED", "m.csv")
    call = acme.calls()[acme.files()["late.wav"].call_id]
    assert call.meta == {"client_reference": "REF-LATE", "call_type": "OUTBOUND"}


def test_overwrite_of_a_waiting_file_imports_only_the_newer_bytes(acme: Rig,
                                                                  clock: ManualClock) -> None:
    acme.land(tone(1), "a.wav")
    acme.tick()
    newer = tone(2)
    acme.land(newer, "a.wav")
    clock.advance(WINDOW + 1)
    acme.tick()
    (call,) = acme.calls().values()
    assert (call.size, len(acme.files())) == (len(newer), 1)
    assert only(acme.batches()).status == "COMPLETED"


def test_rename_inside_a_scope_imports_the_file_under_its_new_name(acme: Rig,
                                                                   clock: ManualClock) -> None:
    old = acme.land(tone(1), "draft.wav")
    acme.recorder.removed("acme/draft.wav")  # what the SFTP server does on RENAME
    new = old.rename(old.with_name("final.wav"))
    stat = new.stat()
    acme.recorder.landed("acme/final.wav", stat.st_size, stat.st_mtime_ns)
    acme.tick()
    clock.advance(WINDOW + 1)
    acme.tick()
    assert statuses(acme) == {"final.wav": "COMPLETED"}
    (call,) = acme.calls().values()
    assert call.file_name == "final.wav"


def test_unsupported_file_type_is_skipped_with_its_extension_and_joins_the_batch(
        acme: Rig, clock: ManualClock) -> None:
    acme.land(b"notes", "readme.pdf")
    acme.land(tone(1), "a.wav")
    acme.tick()
    clock.advance(WINDOW + 1)
    acme.tick()
    files = acme.files()
    assert (files["readme.pdf"].status, files["readme.pdf"].reason) == (
        "SKIPPED", "unsupported file type .pdf")
    assert files["readme.pdf"].batch_id == files["a.wav"].batch_id


def test_too_long_and_too_large_files_fail_with_the_limit_in_the_reason(
        acme: Rig, clock: ManualClock) -> None:
    acme.settings.limits.max_duration_seconds = 10.5
    acme.land(tone(1), "long.wav")
    acme.land(tone(2, seconds=10.2), "ok.wav")
    acme.tick()
    clock.advance(WINDOW + 1)
    acme.tick()
    files = acme.files()
    assert files["long.wav"].reason == "too long: 11.0 s > 10.5 s"
    assert files["ok.wav"].status == "COMPLETED"
    acme.settings.limits.max_file_bytes = 1000
    acme.land(tone(3), "big.wav")
    acme.tick()
    clock.advance(WINDOW + 1)
    acme.tick()
    assert acme.files()["big.wav"].reason.startswith("too large: 176044 bytes > limit of 1000")


def test_bad_csv_value_is_dropped_with_a_warning_and_the_file_still_imported(
        acme: Rig) -> None:
    acme.land(manifest("a.wav,,2026-02-30,REF-A,sideways"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.tick()
    row = acme.files()["a.wav"]
    assert row.status == "COMPLETED"
    assert acme.calls()[row.call_id].meta == {"client_reference": "REF-A"}
    assert any("call_type 'sideways' dropped" in w for w in row.warnings)
    assert any("call_date '2026-02-30' dropped" in w for w in row.warnings)


def test_agent_linked_from_the_row_code_else_a_file_name_token(acme: Rig,
                                                               clock: ManualClock) -> None:
    with acme.db.session() as session:
        for code in ("JS001", "KL003"):
            session.add(Agent(code=code, name=code, created_at=clock.now()))
    acme.land(manifest("call_JS001_x.wav,KL003,,,", "call_JS001_y.wav,ZZ999,,,",
                       "plain.wav,,,,"), "m.csv")
    acme.land(tone(1), "call_JS001_x.wav")
    acme.land(tone(2), "call_JS001_y.wav")
    acme.land(tone(3), "plain.wav")
    acme.tick()
    linked = {c.file_name: c.agent_code for c in acme.calls().values()}
    assert linked == {"call_JS001_x.wav": "KL003", "call_JS001_y.wav": "JS001",
                      "plain.wav": None}


@pytest.mark.parametrize(("first", "second", "reason"), [
    (("a.wav", 1, "a.wav,,,REF-1,"), ("b.wav", 2, "b.wav,,,REF-1,"),
     "client_reference REF-1 already imported"),
    (("call_JS001.wav", 1, "call_JS001.wav,JS001,2026-01-15,,"),
     ("call_JS001.wav", 2, "call_JS001.wav,JS001,2026-01-15,,"),
     "same file name, agent and call date already imported"),
    (("a.wav", 1, "a.wav,,,,"), ("a.wav", 2, "a.wav,,,,"),
     "same file name already imported through SFTP"),
    (("a.wav", 1, "a.wav,,,,"), ("b.wav", 1, "b.wav,,,,"), "same content already imported"),
])
def test_each_kind_of_duplicate_ends_duplicate_with_its_reason_and_the_original_untouched(
        acme: Rig, clock: ManualClock, first: tuple, second: tuple, reason: str) -> None:
    with acme.db.session() as session:
        session.add(Agent(code="JS001", name="James Smith", created_at=clock.now()))
    for (name, seed, row), scope in ((first, "acme/day1"), (second, "acme/day2")):
        acme.land(manifest(row), "m.csv", scope=scope)
        acme.land(tone(seed), name, scope=scope)
        acme.tick()
    with acme.db.session() as session:
        audio = session.exec(select(IngestFile).where(IngestFile.kind == "audio")).all()
    original, copy = sorted(audio, key=lambda f: f.scope)
    calls = acme.calls()
    assert (original.status, calls[original.call_id].status) == ("COMPLETED", "PENDING")
    assert (copy.status, calls[copy.call_id].status) == ("DUPLICATE", "DUPLICATE")
    assert copy.reason == f"duplicate: {reason} (call {original.call_id})"
    assert calls[copy.call_id].duplicate_of == original.call_id
    # Nothing of the second batch was imported: a duplicate is a rejected file.
    assert [b.status for b in acme.batches()] == ["COMPLETED", "FAILED"]


def test_cancel_skips_files_not_yet_imported_and_keeps_the_imported_ones(
        acme: Rig, clock: ManualClock) -> None:
    acme.land(manifest("a.wav,,,,", "b.wav,,,,"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.land(tone(9), "c.wav", scope="acme/other")
    acme.tick()
    batch = next(b for b in acme.batches() if b.csv_file)
    skipped = control.cancel(acme.db, clock, batch.id)
    cancelled = next(b for b in acme.batches() if b.id == batch.id)
    assert (cancelled.status, cancelled.reason, cancelled.missing) == (
        "CANCELLED", "cancelled by an operator", ["b.wav"])
    files = acme.files()
    assert skipped == [files["a.wav"].id]
    assert (files["a.wav"].status, files["a.wav"].reason) == (
        "SKIPPED", "not imported: its batch was cancelled by an operator")
    acme.tick()  # the sweep moves the cancelled file's landing copy aside
    assert not (acme.settings.landing_path / "acme" / "a.wav").exists()
    acme.land(tone(2), "b.wav")  # no longer awaited: a CSV-less batch of its own
    acme.tick()
    assert acme.files()["b.wav"].status == "DETECTED"
    assert acme.files()["c.wav"].status == "DETECTED"  # other scopes are not touched
    with pytest.raises(errors.Conflict, match="only an open or processing batch"):
        control.cancel(acme.db, clock, batch.id)


def test_cancel_of_a_required_csv_failed_batch_releases_its_waiting_files(
        rig: Rig, clock: ManualClock) -> None:  # noqa: F811
    make_campaign(rig.db, clock, "acme", batch_window=WINDOW, csv_mode="required")
    rig.land(tone(1), "a.wav")
    rig.tick()
    clock.advance(WINDOW + 1)
    rig.tick()
    failed = only(rig.batches())
    control.cancel(rig.db, clock, failed.id)
    rig.land(manifest("a.wav,,,,"), "m.csv")
    rig.tick()
    assert rig.files()["a.wav"].status == "SKIPPED"
    assert {b.status for b in rig.batches()} == {"CANCELLED", "WAITING_FOR_FILES"}


def test_retry_reimports_failed_files_whose_bytes_are_kept_in_a_new_batch(
        acme: Rig, clock: ManualClock) -> None:
    acme.settings.limits.min_duration_seconds = 12
    acme.land(manifest("a.wav,,,REF-A,", "b.wav,,,REF-B,"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.land(tone(2, seconds=12.5), "b.wav")
    acme.tick()
    old = only(acme.batches())
    assert old.status == "INCOMPLETE"
    acme.settings.limits.min_duration_seconds = 10  # the operator lowered the limit
    result = control.retry(acme.db, clock, acme.settings.landing_path,
                           acme.settings.rejected_path, old.id)
    assert result.retried == ["a.wav"]
    acme.tick()
    earlier, new = acme.batches()
    assert (new.id, new.status, new.csv_file) == (result.batch_id, "COMPLETED", "m.csv")
    assert f"retried in batch {new.id}" in (earlier.reason or "")
    calls = [c for c in acme.calls().values() if c.file_name == "a.wav"]
    assert [c.meta["client_reference"] for c in calls] == ["REF-A"]
    with pytest.raises(errors.Conflict, match="nothing to retry"):
        control.retry(acme.db, clock, acme.settings.landing_path, acme.settings.rejected_path,
                      new.id if new.status == "INCOMPLETE" else old.id)


def test_retry_refuses_a_batch_that_is_not_failed_or_incomplete(acme: Rig,
                                                               clock: ManualClock) -> None:
    acme.land(tone(1), "a.wav")
    acme.tick()
    batch = only(acme.batches())
    with pytest.raises(errors.Conflict, match="only a FAILED or INCOMPLETE batch"):
        control.retry(acme.db, clock, acme.settings.landing_path, acme.settings.rejected_path,
                      batch.id)


def test_route_pass_reads_the_names_of_csv_batches_only(acme: Rig) -> None:
    """A CSV-less batch awaits no name: a route pass does not read its files' names, so its
    cost stays the same however many uploads the open window has gathered."""
    acme.land(manifest("a.wav,,,,", "b.wav,,,,"), "m.csv")
    acme.land(tone(1), "a.wav")
    acme.land(tone(2), "z.wav")  # named by no CSV
    acme.tick()
    with acme.db.session() as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == "acme")).one()
        scope = routing.load_scope(session, campaign, "acme")
        index = {b.csv_file: scope.index[b.id] for b in scope.batches}
    assert set(index) == {"m.csv", None}
    assert (index["m.csv"].present, index["m.csv"].awaited) == ({"a.wav"}, {"b.wav"})
    assert index[None].present == set()
    assert acme.files()["z.wav"].batch_id == only(
        [b for b in acme.batches() if b.csv_file is None]).id
