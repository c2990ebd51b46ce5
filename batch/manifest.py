"""CSV manifests: bytes in, rows of cleaned metadata out (pure, no I/O).

Rules (SPEC §3 "CSV manifest"): UTF-8 with or without BOM, RFC 4180 quoting and CRLF through the
``csv`` module; header names trimmed and matched case-insensitively; unknown columns kept as
custom metadata under their trimmed header; a bad value is dropped with a warning on its row
(``ingestd.metadata.clean``); a file named twice keeps its first row and the second becomes a
warning on that row (rows' warnings end up on the file they name). Bytes that are not UTF-8 are
read as Windows-1252 (Latin-1 for the few bytes it leaves undefined) with a warning on the
manifest, never with U+FFFD replacement characters. File names are NFC-normalised, like the
names the SFTP server records.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ingestd import errors, metadata

FILE_NAME = "file_name"
# Control characters a text CSV never holds (tab, CR and LF are fine).
_CONTROL = {chr(c) for c in range(32)} - {"\t", "\r", "\n"}
MAX_CONTROL_SHARE = 0.01


@dataclass
class ManifestRow:
    file_name: str
    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The row as stored in ``Batch.manifest_rows``."""
        return {"file_name": self.file_name, "metadata": dict(self.metadata),
                "warnings": list(self.warnings)}


@dataclass
class Manifest:
    rows: list[ManifestRow]
    warnings: list[str] = field(default_factory=list)

    @property
    def file_names(self) -> list[str]:
        return [row.file_name for row in self.rows]


def parse_manifest(data: bytes) -> Manifest:
    """Parse a manifest; raise ManifestError saying why when it cannot be used at all."""
    text, warnings = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise errors.ManifestError("empty CSV: no header row")
        columns = _columns(header)
        rows = _read_rows(reader, columns, warnings)
    except csv.Error as exc:
        raise errors.ManifestError(f"not a readable CSV: {exc}") from exc
    return Manifest(rows=rows, warnings=warnings)


def decode(data: bytes) -> tuple[str, list[str]]:
    """The manifest's text and the warnings about its encoding."""
    if not data.strip():
        raise errors.ManifestError("empty CSV file (0 bytes)" if not data else
                                   "empty CSV: only blank space")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return _checked_text(data.decode(codec, errors="strict")), []
    if b"\x00" in data:
        raise errors.ManifestError("not a text file: the CSV holds binary data")
    try:
        return _checked_text(data.decode("utf-8-sig")), []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return _checked_text(text), ["CSV is not valid UTF-8: read as Windows-1252/Latin-1"]


def _checked_text(text: str) -> str:
    controls = sum(1 for char in text if char in _CONTROL)
    if controls > max(1, len(text) * MAX_CONTROL_SHARE):
        raise errors.ManifestError("not a text file: the CSV holds binary data")
    return text


def _columns(header: list[str]) -> list[str | None]:
    """The metadata key of each column (None: ignored); standard names are lower-cased."""
    keys: list[str | None] = []
    for cell in header:
        name = unicodedata.normalize("NFC", cell.strip())
        lowered = name.lower()
        key = lowered if lowered in metadata.STANDARD_FIELDS or lowered == FILE_NAME else name
        keys.append(key if key and key not in keys else None)
    if FILE_NAME not in keys:
        found = ", ".join(repr(cell.strip()) for cell in header if cell.strip())
        raise errors.ManifestError(f"no file_name column (columns found: {found})")
    return keys


def _read_rows(reader: Any, columns: list[str | None],
               warnings: list[str]) -> list[ManifestRow]:
    by_name: dict[str, ManifestRow] = {}
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        raw = {key: cell for key, cell in zip(columns, cells, strict=False) if key is not None}
        name = unicodedata.normalize("NFC", raw.pop(FILE_NAME, "").strip())
        if not name:
            warnings.append(f"line {reader.line_num}: row without a file_name ignored")
            continue
        if name in by_name:
            by_name[name].warnings.append(
                f"duplicate row for {name} on line {reader.line_num} ignored: the first row wins")
            continue
        cleaned, row_warnings = metadata.clean(raw)
        if len(cells) > len(columns):
            row_warnings.append(f"line {reader.line_num}: values beyond the last column ignored")
        by_name[name] = ManifestRow(file_name=name, metadata=cleaned, warnings=row_warnings)
    return list(by_name.values())
