"""The streaming multipart reader: fields, the file on disk, limits and malformed bodies."""

from __future__ import annotations

import asyncio

import pytest

from ingestd.api.envelope import ApiError
from ingestd.api.form import clean_file_name, multipart_boundary, receive_form

B = b"----b0undary"


def body(*parts: bytes, close: bool = True) -> bytes:
    out = b"".join(b"--" + B + b"\r\n" + part + b"\r\n" for part in parts)
    return out + (b"--" + B + b"--\r\n" if close else b"")


def field(name: str, value: str) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()


def file_part(name: str, data: bytes) -> bytes:
    head = f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'
    return head.encode("utf-8") + data


def receive(raw: bytes, tmp_path, limit=1000, chunk=7):
    async def stream():
        for i in range(0, len(raw), chunk):
            yield raw[i:i + chunk]

    return asyncio.run(receive_form(stream(), B, tmp_path, limit))


def test_fields_and_file_arrive_in_small_chunks(tmp_path):
    data = bytes(range(256)) * 3
    form = receive(body(field("agent_code", "JS001"), file_part("dir/réclamation 01.ogg", data),
                        field("call_type", "inbound")), tmp_path)
    assert form.fields == {"agent_code": "JS001", "call_type": "inbound"}
    assert form.file_name == "réclamation 01.ogg" and form.size == len(data)
    assert form.path.read_bytes() == data and form.path.parent == tmp_path
    form.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("raw, status, words", [
    (body(file_part("a.mp3", b"x" * 1001)), 413, "more than the limit of 1000 bytes"),
    (body(file_part("a.mp3", b"x" * 10), close=False), 400, "ended before its closing"),
    (body(field("a", "1"), field("a", "2")), 400, "given twice"),
    (body(field("a", "x" * 9000)), 400, "longer than 8192 bytes"),
    (body(file_part("", b"x")), 400, "usable file name"),
    (b"garbage without any boundary", 400, ""),
])
def test_refusals_leave_no_file(tmp_path, raw, status, words):
    with pytest.raises(ApiError) as info:
        receive(raw, tmp_path, chunk=64)
    assert info.value.status == status and words in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_boundary_from_content_type():
    assert multipart_boundary("multipart/form-data; boundary=abc") == b"abc"
    for bad in (None, "application/json", "multipart/form-data"):
        with pytest.raises(ApiError):
            multipart_boundary(bad)


@pytest.mark.parametrize("raw, name", [("C:\\calls\\a.mp3", "a.mp3"), ("../../x.wav", "x.wav"),
                                       ("e\u0301.mp3", "\u00e9.mp3")])
def test_client_file_names_are_reduced_to_a_safe_name(raw, name):
    assert clean_file_name(raw) == name
