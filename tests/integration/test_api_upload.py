"""POST /api/v1/calls/upload over real HTTP: every answer of SPEC §5 with its exact JSON."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import make_campaign
from fakes.http_server import LiveApi, tweak
from sqlmodel import select

from ingestd import api_keys
from ingestd.models import Call, CallSource

MP3 = "20260115_JS001_outbound.mp3"
WEBM = "JD002 callback 1415.webm"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
def campaign(db, clock):
    return make_campaign(db, clock)


@pytest.fixture
def key(db, clock, campaign):
    return api_keys.create(db, campaign.slug, clock)


@pytest.fixture
def api(settings, db, clock, key):
    with LiveApi(settings, db, clock) as live:
        yield live


def post(api, key, path, name=None, headers=None, **fields):
    files = {"file": (name or path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(f"{api.url}/api/v1/calls/upload", files=files, data=fields,
                      headers={"X-API-Key": key, **(headers or {})}, timeout=60)


def assert_error(response, status, code, *in_message):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    assert body["meta"]["request_id"].startswith("req_") and body["meta"]["timestamp"]
    for words in in_message:
        assert words in body["error"]["message"]
    assert all(h in response.headers for h in RATE_HEADERS)
    return body


def calls(db):
    with db.session() as session:
        return session.exec(select(Call)).all()


def test_upload_is_accepted_with_the_exact_fields(api, key, db, corpus, campaign, settings):
    response = post(api, key, corpus / "calls" / MP3, call_type="inbound", call_date="2026-01-15",
                    agent_code="JS001", client_reference="R-1", team="north")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and set(body) == {"success", "data", "meta"}
    assert set(body["data"]) == {"call_id", "file_name", "status", "campaign_id", "created_at"}
    assert body["data"]["file_name"] == MP3 and body["data"]["status"] == "PENDING"
    assert body["data"]["campaign_id"] == campaign.id
    assert body["data"]["created_at"].endswith("Z")
    assert set(body["meta"]) == {"request_id", "timestamp"}
    assert response.headers["x-ratelimit-limit"] == "60"
    assert response.headers["x-ratelimit-remaining"] == "59"
    [call] = calls(db)
    assert call.id == body["data"]["call_id"] and call.source == CallSource.API.value
    assert call.meta == {"call_type": "INBOUND", "call_date": "2026-01-15", "agent_code": "JS001",
                         "client_reference": "R-1", "team": "north"}
    assert list(settings.incoming_path.iterdir()) == []  # the temp file is gone


def test_bulk_source_header(api, key, db, corpus):
    response = post(api, key, corpus / "calls" / MP3, headers={"X-Ingestd-Source": "BULK"})
    assert response.status_code == 201
    assert calls(db)[0].source == CallSource.BULK.value
    assert_error(post(api, key, corpus / "calls" / WEBM, headers={"X-Ingestd-Source": "SFTP"}),
                 400, "VALIDATION_ERROR", "X-Ingestd-Source must be API or BULK")


@pytest.mark.parametrize("presented", [None, "tv_not-a-key", "sk_wrong-prefix"])
def test_missing_or_unknown_key_is_401(api, corpus, presented):
    headers = {"X-API-Key": presented} if presented else {}
    response = httpx.post(f"{api.url}/api/v1/calls/upload", headers=headers,
                          files={"file": ("a.mp3", b"x")})
    assert_error(response, 401, "UNAUTHORIZED", "X-API-Key")


def test_rotation_revokes_the_old_key_at_once(api, key, db, clock, corpus, campaign):
    new_key = api_keys.rotate(db, campaign.slug, clock)
    assert_error(post(api, key, corpus / "calls" / MP3), 401, "UNAUTHORIZED")
    assert post(api, new_key, corpus / "calls" / MP3).status_code == 201


def test_archived_campaign_is_403(api, key, db, corpus, campaign):
    with db.session() as session:
        session.get(type(campaign), campaign.id).archived = True
    assert_error(post(api, key, corpus / "calls" / MP3), 403, "FORBIDDEN", "archived")
    assert calls(db) == []


def test_duplicate_is_409_with_existing_call_id(api, key, db, corpus):
    first = post(api, key, corpus / "calls" / MP3, client_reference="R-9").json()["data"]
    body = assert_error(post(api, key, corpus / "calls" / WEBM, client_reference="R-9"),
                        409, "DUPLICATE", "client_reference R-9")
    assert body["error"]["existing_call_id"] == first["call_id"]
    assert len(calls(db)) == 1  # a refused duplicate is not recorded


@pytest.mark.parametrize("folder, name, status, code, words", [
    ("bad", "bad_text_named.mp3", 415, "UNSUPPORTED_FORMAT", "not a decodable audio file"),
    ("bad", "bad_corrupt_header.wav", 415, "UNSUPPORTED_FORMAT", "not a decodable audio"),
    ("bad", "bad_unsupported.txt", 415, "UNSUPPORTED_FORMAT", "unsupported file type"),
    ("bad", "bad_too_short_4s.wav", 400, "VALIDATION_ERROR", "too short: 4.0 s < 10 s"),
    ("bad", "bad_zero_bytes.mp3", 400, "VALIDATION_ERROR", "empty file"),
])
def test_bad_recordings_are_refused_by_their_bytes(api, key, db, corpus, settings, folder, name,
                                                   status, code, words):
    assert_error(post(api, key, corpus / folder / name), status, code, words)
    assert calls(db) == [] and list(settings.incoming_path.iterdir()) == []


def test_audio_bytes_under_a_wrong_extension_are_415(api, key, corpus):
    assert_error(post(api, key, corpus / "calls" / MP3, name="call.exe"), 415,
                 "UNSUPPORTED_FORMAT", ".exe")


@pytest.mark.parametrize("fields, words", [
    ({"call_type": "SIDEWAYS"}, "call_type 'SIDEWAYS'"),
    ({"call_date": "15/01/2026"}, "call_date '15/01/2026'"),
])
def test_bad_metadata_is_400_naming_the_field(api, key, db, corpus, fields, words):
    assert_error(post(api, key, corpus / "calls" / MP3, **fields), 400, "VALIDATION_ERROR",
                 words)
    assert calls(db) == []


def test_form_without_a_recording_is_400(api, key):
    response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                          files={"agent_name": (None, "Ann")})
    assert_error(response, 400, "VALIDATION_ERROR", "'file' field or give 'audio_url'")


def test_body_that_is_not_multipart_is_400(api, key):
    response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                          json={"file": "x"})
    assert_error(response, 400, "VALIDATION_ERROR", "multipart/form-data")


def test_file_and_audio_url_together_is_400(api, key, corpus):
    assert_error(post(api, key, corpus / "calls" / MP3, audio_url="http://example.com/a.mp3"),
                 400, "VALIDATION_ERROR", "either file or audio_url")


def _small_limit_api(settings, db, clock, limit=100_000, **http):
    settings = tweak(settings, limits={"max_file_bytes": limit}, http=http)
    return LiveApi(settings, db, clock)


def test_declared_content_length_over_the_limit_is_413_before_reading(settings, db, clock, key,
                                                                      tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 2_000_000)
    with _small_limit_api(settings, db, clock) as api:
        response = post(api, key, big)
    assert_error(response, 413, "FILE_TOO_LARGE", "announces", "over the limit of 100000 bytes")


def test_file_part_over_the_limit_is_413_while_streaming(settings, db, clock, key, corpus):
    path = corpus / "calls" / "call-JD002-0930.wav"  # 812 KB: declared size within the slack
    with _small_limit_api(settings, db, clock, limit=500_000) as api:
        response = post(api, key, path)
    assert_error(response, 413, "FILE_TOO_LARGE", "more than the limit of 500000 bytes")
    assert list(settings.incoming_path.iterdir()) == []


def test_chunked_body_over_the_limit_is_413_as_soon_as_it_passes(settings, db, clock, key):
    """No Content-Length: the server counts, answers 413 and keeps nothing."""
    with _small_limit_api(settings, db, clock) as api:
        reply = _raw_upload(api, key, file_bytes=400_000, chunked=True, stop_after=200_000)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":"FILE_TOO_LARGE"' in reply
    assert list(settings.incoming_path.iterdir()) == []


def test_content_length_under_the_truth_cannot_sneak_a_big_file_in(settings, db, clock, key):
    """The server reads only what Content-Length announced: the multipart never closes."""
    with _small_limit_api(settings, db, clock) as api:
        reply = _raw_upload(api, key, file_bytes=400_000, declared=90_000, stop_after=90_000)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"ended before its closing boundary" in reply
    assert list(settings.incoming_path.iterdir()) == []
    assert calls(db) == []


def test_interrupted_upload_leaves_nothing(api, key, db, settings):
    def temp_files():
        return list(settings.incoming_path.glob("http-*.upload"))

    def hang_up_once_the_server_writes():
        _wait_until(lambda: settings.incoming_path.is_dir() and temp_files())

    _raw_upload(api, key, file_bytes=300_000, stop_after=150_000,
                hang_up=hang_up_once_the_server_writes)
    _wait_until(lambda: temp_files() == [])
    assert calls(db) == []


def _wait_until(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _raw_upload(api, key, file_bytes, *, chunked=False, declared=None, stop_after=None,
                hang_up=None):
    """Send an upload by hand over a socket; return what the server answered."""
    boundary = "XyZ"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head + b"\0" * file_bytes + tail
    port = int(api.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared or len(body)}"
    sock.sendall((f"POST /api/v1/calls/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n{length}\r\n\r\n"
                  ).encode())
    sent = 0
    limit = stop_after if stop_after is not None else len(body)
    try:
        while sent < limit:
            piece = body[sent:sent + 16384]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if hang_up:
            hang_up()
            sock.close()
            return b""
        return _read_reply(sock)
    except (BrokenPipeError, ConnectionResetError):
        return _read_reply(sock)
    finally:
        sock.close()


def _read_reply(sock):
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return data
