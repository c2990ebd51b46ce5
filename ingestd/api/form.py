"""A ``multipart/form-data`` upload read as a stream: fields in memory, the file on disk.

The body is fed chunk by chunk to python-multipart's streaming parser. The ``file`` part goes
to a temporary file in ``incoming/`` (``http-<random>.upload``, removed by the SFTP server's
start-up sweep too if the process dies) while its bytes are counted: the moment the count
passes ``limits.max_file_bytes`` the upload is refused with 413, whatever ``Content-Length``
said. Other parts are small text fields. Memory stays at one network chunk whatever the size.
The caller owns the temporary file and calls :meth:`ReceivedForm.discard` in all cases.
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from ingestd.api.envelope import ApiError

FILE_FIELD = "file"
MAX_FIELD_BYTES = 8 * 1024
MAX_FIELDS = 64
TEMP_SUFFIX = ".upload"  # the suffix the SFTP server's start-up sweep clears from incoming/


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    path: Path | None = None
    size: int = 0

    def discard(self) -> None:
        """Remove the temporary file (the intake keeps its own stored copy)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Sink:
    """The parser's callbacks: route each part to a field buffer or the temporary file."""

    def __init__(self, form: ReceivedForm, incoming: Path, max_file_bytes: int) -> None:
        self.form = form
        self.incoming = incoming
        self.max_file_bytes = max_file_bytes
        self.header_name = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.field_name: str | None = None
        self.field_data = bytearray()
        self.in_file = False
        self.fh: BinaryIO | None = None
        self.pending: list[bytes] = []  # file bytes parsed from the current network chunk
        self.ended = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        self.headers, self.header_name, self.header_value = {}, b"", b""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.strip().lower()] = self.header_value.strip()
        self.header_name, self.header_value = b"", b""

    def headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get(b"content-disposition"))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise ApiError(400, "each multipart part needs Content-Disposition: form-data "
                                "with a name")
        self.field_name = _text(name, "field name")
        if self.field_name in self.form.fields or (
                self.field_name == FILE_FIELD and self.form.file_name is not None):
            raise ApiError(400, f"field {self.field_name!r} is given twice")
        self.in_file = self.field_name == FILE_FIELD
        if self.in_file:
            self._open_file(params.get(b"filename"))
        elif len(self.form.fields) >= MAX_FIELDS:
            raise ApiError(400, f"too many form fields (at most {MAX_FIELDS})")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.form.size += end - start
            if self.form.size > self.max_file_bytes:
                raise ApiError(413, f"file too large: more than the limit of "
                                    f"{self.max_file_bytes} bytes")
            self.pending.append(data[start:end])
            return
        self.field_data += data[start:end]
        if len(self.field_data) > MAX_FIELD_BYTES:
            raise ApiError(400, f"field {self.field_name!r} is longer than "
                                f"{MAX_FIELD_BYTES} bytes")

    def part_end(self) -> None:
        if not self.in_file and self.field_name is not None:
            self.form.fields[self.field_name] = _text(bytes(self.field_data),
                                                      f"field {self.field_name!r}")
        self.field_data = bytearray()
        self.in_file = False

    def end(self) -> None:
        self.ended = True

    def _open_file(self, raw_name: bytes | None) -> None:
        self.form.file_name = clean_file_name(_text(raw_name or b"", "file name"))
        self.form.path = self.incoming / f"http-{secrets.token_hex(12)}{TEMP_SUFFIX}"
        self.fh = self.form.path.open("xb")

    def take_pending(self) -> bytes:
        chunk, self.pending = b"".join(self.pending), []
        return chunk


async def receive_form(body: AsyncIterator[bytes], boundary: bytes, incoming: Path,
                       max_file_bytes: int) -> ReceivedForm:
    """Parse the streamed body; the file part is written to ``incoming`` as it arrives."""
    form = ReceivedForm()
    incoming.mkdir(parents=True, exist_ok=True)
    sink = _Sink(form, incoming, max_file_bytes)
    parser = MultipartParser(boundary, sink.callbacks())
    try:
        async for chunk in body:
            _feed(parser, chunk)
            if sink.pending and sink.fh is not None:
                await asyncio.to_thread(sink.fh.write, sink.take_pending())
        parser.finalize()
        if not sink.ended:
            raise ApiError(400, "the multipart body ended before its closing boundary")
        if sink.fh is not None:
            await asyncio.to_thread(sink.fh.flush)
    except BaseException:
        _close(sink)
        form.discard()
        raise
    _close(sink)
    return form


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; 400 for anything else."""
    kind, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(400, "the upload must be multipart/form-data with a boundary")
    if len(boundary) > 70:
        raise ApiError(400, "multipart boundary longer than 70 characters")
    return boundary


def clean_file_name(raw: str) -> str:
    """The last path component of a client's file name, NFC; 400 when nothing usable is left."""
    name = PurePosixPath(raw.replace("\\", "/")).name.strip()
    name = unicodedata.normalize("NFC", name)
    if not name or name in {".", ".."} or any(ord(c) < 32 for c in name):
        raise ApiError(400, f"the file part needs a usable file name (got {raw!r})")
    if len(name.encode("utf-8")) > 255:
        raise ApiError(400, "file name longer than 255 bytes")
    return name


def _feed(parser: MultipartParser, chunk: bytes) -> None:
    try:
        parser.write(chunk)
    except ApiError:
        raise
    except Exception as exc:  # python-multipart's parse errors: the body is not valid multipart
        raise ApiError(400, f"malformed multipart body: {exc}") from exc


def _close(sink: _Sink) -> None:
    if sink.fh is not None:
        sink.fh.close()


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"{what} is not UTF-8 text") from exc
    if "\0" in text:  # no database text column holds NUL (PostgreSQL refuses it)
        raise ApiError(400, f"{what} contains a NUL character")
    return text
