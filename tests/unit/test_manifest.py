"""parse_manifest against every corpus CSV (expected.json) and a round-trip property."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.manifest import parse_manifest
from ingestd import errors

CORPUS_CSVS = [
    "manifest_clean.csv", "manifest_bom_crlf.csv", "manifest_quoted.csv",
    "manifest_header_variants.csv", "manifest_missing_file_name.csv",
    "manifest_duplicate_row.csv", "manifest_bad_values.csv", "manifest_latin1.csv",
    "manifest_missing_file.csv", "manifest_with_bad_files.csv", "manifest_empty.csv",
    "manifest_header_only.csv",
]
UNREADABLE = {"manifest_missing_file_name.csv": "no file_name column",
              "manifest_empty.csv": "empty CSV"}


def expected_entry(corpus: Path, name: str) -> dict:
    entries = json.loads((corpus / "expected.json").read_text(encoding="utf-8"))["csv"]
    return next(e for e in entries if e["path"] == f"csv/{name}")


@pytest.mark.parametrize("name", CORPUS_CSVS)
def test_corpus_manifest(corpus: Path, name: str) -> None:
    expected = expected_entry(corpus, name)
    data = (corpus / "csv" / name).read_bytes()
    if name in UNREADABLE:
        with pytest.raises(errors.ManifestError, match=UNREADABLE[name]):
            parse_manifest(data)
        return
    manifest = parse_manifest(data)
    assert manifest.file_names == [row["file_name"] for row in expected["rows"]]
    for row, want in zip(manifest.rows, expected["rows"], strict=True):
        fields = {k: v for k, v in want.items() if k not in ("file_name", "custom")}
        wanted = {k: v for k, v in {**fields, **want.get("custom", {})}.items() if v is not None}
        assert row.metadata == wanted, row.file_name
    assert "\ufffd" not in repr(manifest)


def test_every_corpus_csv_is_covered(corpus: Path) -> None:
    assert sorted(p.name for p in (corpus / "csv").glob("*.csv")) == sorted(CORPUS_CSVS)


def test_duplicate_row_warns_on_the_first_row(corpus: Path) -> None:
    manifest = parse_manifest((corpus / "csv" / "manifest_duplicate_row.csv").read_bytes())
    by_name = {row.file_name: row for row in manifest.rows}
    assert by_name["call-JD002-0930.wav"].metadata["client_reference"] == "NW-2026-000102"
    (warning,) = by_name["call-JD002-0930.wav"].warnings
    assert "duplicate row for call-JD002-0930.wav" in warning


def test_bad_values_are_dropped_with_a_warning_on_their_row(corpus: Path) -> None:
    manifest = parse_manifest((corpus / "csv" / "manifest_bad_values.csv").read_bytes())
    warnings = {row.file_name: row.warnings for row in manifest.rows}
    assert any("call_type" in w and "SIDEWAYS" in w
               for w in warnings["20260117_KL003_inbound.mp4"])
    assert any("call_date" in w and "2026-02-30" in w for w in warnings["JD002 callback 1415.webm"])
    assert warnings["inbound_RB004_20260119.wav"] == []


def test_latin1_is_decoded_with_a_warning(corpus: Path) -> None:
    manifest = parse_manifest((corpus / "csv" / "manifest_latin1.csv").read_bytes())
    assert manifest.file_names[0] == "réclamation 01.ogg"
    assert manifest.warnings == ["CSV is not valid UTF-8: read as Windows-1252/Latin-1"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty CSV file"),
    (b"\xef\xbb\xbf \r\n", "empty CSV"),
    (b"\x00\x01\x02PK\x03\x04binary", "not a text file"),
    (b"name,agent\nx.mp3,A\n", "no file_name column"),
])
def test_unreadable(data: bytes, reason: str) -> None:
    with pytest.raises(errors.ManifestError, match=reason):
        parse_manifest(data)


def test_names_are_nfc_and_rows_without_a_name_warn() -> None:
    decomposed = unicodedata.normalize("NFD", "réclamation 01.ogg")
    manifest = parse_manifest(f"file_name,Queue\n{decomposed},Q1\n,Q2\n".encode())
    assert manifest.file_names == ["réclamation 01.ogg"]
    assert manifest.rows[0].metadata == {"Queue": "Q1"}
    assert manifest.warnings == ["line 3: row without a file_name ignored"]


# --- property: whatever csv.writer writes, parse_manifest reads back ---------------------------

# A bare "\r" is left out: csv.writer with a "\n" terminator does not quote it (its own flaw).
text = st.lists(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")
                | st.sampled_from([",", '"', "\n", "\r\n", " "]), max_size=20).map("".join)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Z"),
                              blacklist_characters="\ufeff"), min_size=1, max_size=15)
COLUMNS = ["agent_name", "customer_id", "disposition", "Queue Name", "Notes"]


def header_variant(name: str, draw: st.DrawFn) -> str:
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
    return " " * draw(st.integers(0, 2)) + cased + " " * draw(st.integers(0, 2))


@st.composite
def manifests(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, dict[str, str]]]]:
    file_names = draw(st.lists(names, min_size=0, max_size=6,
                               unique_by=lambda n: unicodedata.normalize("NFC", n)))
    columns = draw(st.permutations(["file_name", *COLUMNS]))
    rows = [{c: draw(text) for c in COLUMNS} | {"file_name": n} for n in file_names]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    standard = {"file_name", "agent_name", "customer_id", "disposition"}
    writer.writerow([header_variant(c, draw) if c in standard else c for c in columns])
    for row in rows:
        writer.writerow([row[c] for c in columns])
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    expected = [(unicodedata.normalize("NFC", r["file_name"]),
                 {c: r[c].strip() for c in COLUMNS if r[c].strip()}) for r in rows]
    return bom + buffer.getvalue().encode("utf-8"), expected


@settings(max_examples=200, deadline=None)
@given(manifests())
def test_round_trip(case: tuple[bytes, list[tuple[str, dict[str, str]]]]) -> None:
    data, expected = case
    manifest = parse_manifest(data)
    assert [(row.file_name, row.metadata) for row in manifest.rows] == expected
    assert manifest.warnings == []
