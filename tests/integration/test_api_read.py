"""The read endpoints, ops endpoints, framework errors and audio_url, over real HTTP."""

from __future__ import annotations

import functools
import http.server
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import make_campaign
from fakes.http_server import LiveApi, tweak
from test_api_upload import MP3, assert_error, calls

from ingestd import api_keys
from ingestd.intake import Intake
from ingestd.models import Batch, Call
from ingestd.storage.local import LocalStorage

DAY = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(db, clock):
    acme = make_campaign(db, clock, "acme")
    other = make_campaign(db, clock, "other")
    with db.session() as session:
        for i, status in enumerate(["PENDING", "COMPLETED", "COMPLETED", "FAILED"]):
            session.add(_call(f"call_a{i}", acme.id, status, DAY + timedelta(days=i)))
        session.add(_call("call_other", other.id, "COMPLETED", DAY))
        session.add(_batch("bat_a", acme.id, "COMPLETED", DAY))
        session.add(_batch("bat_b", acme.id, "DETECTING", DAY + timedelta(hours=1)))
        session.add(_batch("bat_other", other.id, "COMPLETED", DAY))
    return acme, api_keys.create(db, "acme", clock)


@pytest.fixture
def api(settings, db, clock, world):
    with LiveApi(settings, db, clock) as live:
        yield live


def get(api, key, path, **params):
    return httpx.get(f"{api.url}{path}", params=params, headers={"X-API-Key": key})


def _call(call_id, campaign_id, status, created):
    return Call(id=call_id, campaign_id=campaign_id, source="API", status=status,
                file_name=f"{call_id}.mp3", meta={"agent_code": "JS001"}, created_at=created,
                updated_at=created)


def _batch(batch_id, campaign_id, status, created):
    return Batch(id=batch_id, campaign_id=campaign_id, scope="acme", status=status,
                 deadline=created, created_at=created, updated_at=created)


def data(response):
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and set(body["meta"]) == {"request_id", "timestamp"}
    return body["data"]


@pytest.mark.parametrize("params, ids, total, has_more", [
    ({}, ["call_a0", "call_a1", "call_a2", "call_a3"], 4, False),
    ({"status": "COMPLETED"}, ["call_a1", "call_a2"], 2, False),
    ({"limit": 2, "offset": 1}, ["call_a1", "call_a2"], 4, True),
    ({"from_date": "2026-01-16", "to_date": "2026-01-17"}, ["call_a1", "call_a2"], 2, False),
    ({"from_date": "2026-01-17T09:00:00Z"}, ["call_a2", "call_a3"], 2, False),
])
def test_call_ids_filters_and_pages(api, world, params, ids, total, has_more):
    campaign, key = world
    page = data(get(api, key, f"/api/v1/campaigns/{campaign.id}/calls/ids", **params))
    assert page == {"call_ids": ids, "total": total, "limit": params.get("limit", 100),
                    "offset": params.get("offset", 0), "has_more": has_more}


@pytest.mark.parametrize("params, words", [
    ({"limit": 1001}, "query.limit"),
    ({"limit": 0}, "query.limit"),
    ({"status": "DONE"}, "query.status"),
    ({"from_date": "yesterday"}, "query.from_date"),
])
def test_call_ids_bad_parameters_are_400(api, world, params, words):
    campaign, key = world
    response = get(api, key, f"/api/v1/campaigns/{campaign.id}/calls/ids", **params)
    assert_error(response, 400, "VALIDATION_ERROR", words)


def test_another_campaigns_objects_are_404(api, world, db):
    _, key = world
    with db.session() as session:
        other_id = session.get(Call, "call_other").campaign_id
    for path in (f"/api/v1/campaigns/{other_id}/calls/ids", "/api/v1/calls/call_other",
                 "/api/v1/batches/bat_other", "/api/v1/calls/call_nope"):
        assert_error(get(api, key, path), 404, "NOT_FOUND")


def test_call_view(api, world):
    _, key = world
    view = data(get(api, key, "/api/v1/calls/call_a1"))
    assert view["id"] == "call_a1" and view["campaign"] == "acme"
    assert view["status"] == "COMPLETED" and view["metadata"] == {"agent_code": "JS001"}
    for field in ("transcript", "checks", "score", "flagged", "flag_reasons", "versions"):
        assert field in view


def test_batches_list_and_show(api, world):
    _, key = world
    page = data(get(api, key, "/api/v1/batches"))
    assert [b["id"] for b in page["batches"]] == ["bat_b", "bat_a"]
    assert page["total"] == 2 and page["has_more"] is False
    assert [b["id"] for b in data(get(api, key, "/api/v1/batches", status="COMPLETED"))
            ["batches"]] == ["bat_a"]
    shown = data(get(api, key, "/api/v1/batches/bat_a"))
    assert shown["id"] == "bat_a" and shown["files"] == [] and shown["status"] == "COMPLETED"


def test_read_endpoints_need_a_key(api):
    for path in ("/api/v1/batches", "/api/v1/calls/call_a1"):
        assert_error(httpx.get(f"{api.url}{path}"), 401, "UNAUTHORIZED")


def test_framework_errors_use_the_envelope(api, world):
    _, key = world
    assert_error(get(api, key, "/api/v1/nothing-here"), 404, "NOT_FOUND", "no such endpoint")
    response = httpx.delete(f"{api.url}/api/v1/batches", headers={"X-API-Key": key})
    assert_error(response, 405, "METHOD_NOT_ALLOWED", "DELETE")


def test_health_and_metrics(api, world):
    health = httpx.get(f"{api.url}/healthz")
    assert data(health) == {"status": "ok", "database": "ok"}
    metrics = httpx.get(f"{api.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'ingestd_calls{status="COMPLETED"} 3' in text
    assert 'ingestd_batches{status="DETECTING"} 1' in text
    assert 'ingestd_http_uploads_total{result="accepted"} 0' in text
    assert "# TYPE ingestd_calls gauge" in text


class ExplodingIntake(Intake):
    """Fault injection: the intake fails in a way nobody planned for."""

    def accept(self, sub, **kwargs):
        raise RuntimeError("disk on fire")


def test_unexpected_failure_is_a_500_envelope(settings, db, clock, world, corpus):
    _, key = world
    intake = ExplodingIntake(db, LocalStorage(settings.storage_path), settings.limits, clock)
    with LiveApi(settings, db, clock, intake=intake) as api:
        response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                              files={"file": (MP3, (corpus / "calls" / MP3).read_bytes())})
        body = assert_error(response, 500, "INTERNAL_ERROR", "nothing was kept")
        assert response.headers["x-request-id"] == body["meta"]["request_id"]
        assert "disk on fire" not in response.text  # internals stay in the server log
        metrics = httpx.get(f"{api.url}/metrics").text
    assert list(settings.incoming_path.iterdir()) == []
    assert 'ingestd_http_uploads_total{result="accepted"} 0' in metrics


@pytest.fixture
def file_server(corpus):
    handler = functools.partial(_QuietHandler, directory=str(corpus / "calls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_audio_url_is_downloaded_when_private_urls_are_allowed(settings, db, clock, world,
                                                               file_server):
    _, key = world
    settings = tweak(settings, http={"allow_private_urls": True})
    with LiveApi(settings, db, clock) as api:
        response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                              files={"audio_url": (None, f"{file_server}/{MP3}"),
                                     "call_type": (None, "OUTBOUND")}, timeout=60)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["file_name"] == MP3
    new = [c for c in calls(db) if c.file_name == MP3]
    assert len(new) == 1 and new[0].meta == {"call_type": "OUTBOUND"}
    assert list(settings.incoming_path.iterdir()) == []


@pytest.mark.parametrize("path, status, code, words", [
    ("/missing.mp3", 400, "VALIDATION_ERROR", "answered HTTP 404"),
    (f"/{MP3}", 413, "FILE_TOO_LARGE", "audio_url file too large"),
])
def test_audio_url_failures(settings, db, clock, world, file_server, path, status, code, words):
    _, key = world
    settings = tweak(settings, http={"allow_private_urls": True},
                     limits={"max_file_bytes": 50_000})
    with LiveApi(settings, db, clock) as api:
        response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                              files={"audio_url": (None, f"{file_server}{path}")})
    assert_error(response, status, code, words)
    assert list(settings.incoming_path.iterdir()) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a.mp3", "http://localhost/a.mp3",
                                 "http://169.254.169.254/latest/meta-data/a.mp3",
                                 "http://10.0.0.8/a.mp3", "http://[::1]/a.mp3"])
def test_audio_url_to_private_addresses_is_refused_by_default(api, world, url):
    _, key = world
    response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                          files={"audio_url": (None, url)})
    assert_error(response, 400, "VALIDATION_ERROR", "non-public address", "refused")


def test_audio_url_must_be_http(api, world):
    _, key = world
    response = httpx.post(f"{api.url}/api/v1/calls/upload", headers={"X-API-Key": key},
                          files={"audio_url": (None, "file:///etc/passwd")})
    assert_error(response, 400, "VALIDATION_ERROR", "http or https URL")
