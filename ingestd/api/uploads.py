"""``POST /api/v1/calls/upload``: one recording, streamed to disk, handed to the shared intake.

Order of refusals, cheapest first: key (401), archived campaign (403), concurrent-upload slot
(429), a declared ``Content-Length`` already over the limit (413, before reading a byte), then
the stream itself (413 once the file part passes the limit), the fields (400), the file type by
name (415) and by its bytes in the intake (415, or 400 for a duration outside the limits), and
duplicates (409 with ``existing_call_id``). Whatever happens, the temporary file is removed;
only the intake's stored copy and the call row remain, and only for an accepted upload.

``X-Ingestd-Source: BULK`` marks calls of an ``ingestd upload`` job (source ``BULK``); any
other value than ``API``/``BULK`` is a 400. Fields beyond the standard metadata are kept as
custom metadata, as CSV manifests' extra columns are.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect

from ingestd import audio, errors, metadata
from ingestd.api import remote
from ingestd.api.context import (
    SOURCE_HEADER,
    ApiContext,
    api_context,
    rate_bucket,
    request_id,
    require_key,
)
from ingestd.api.envelope import (
    ApiError,
    UploadEnvelope,
    error_responses,
    success_body,
)
from ingestd.api.form import (
    FILE_FIELD,
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    ReceivedForm,
    multipart_boundary,
    receive_form,
)
from ingestd.api_keys import VerifiedKey
from ingestd.clock import isoformat
from ingestd.intake import Submission
from ingestd.models import Call, CallSource, Campaign

log = logging.getLogger("ingestd.api")
router = APIRouter()
# Room for the fields and part headers beside the file in a declared Content-Length.
FORM_OVERHEAD_BYTES = MAX_FIELDS * MAX_FIELD_BYTES + 64 * 1024
URL_FIELD = "audio_url"
UPLOAD_SOURCES = {"API": CallSource.API, "BULK": CallSource.BULK}

# 2048 characters fit the 8 KiB field limit whatever their UTF-8 length; NUL is refused.
_FIELD_SCHEMA = {"type": "string", "maxLength": 2048, "pattern": "^[^\\u0000]*$"}
REQUEST_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "oneOf": [{"required": [FILE_FIELD]}, {"required": [URL_FIELD]}],
    "properties": {
        FILE_FIELD: {"type": "string", "format": "binary",
                     "description": "The recording (.mp3 .wav .m4a .mp4 .webm .ogg)."},
        URL_FIELD: {"type": "string", "format": "uri",
                    "description": "Instead of file: an http(s) URL the server downloads."},
        **{name: {**_FIELD_SCHEMA} for name in metadata.STANDARD_FIELDS},
        "call_type": {"type": "string", "enum": ["INBOUND", "OUTBOUND"]},
        "call_date": {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}],
                      "description": "YYYY-MM-DD or ISO 8601"},
    },
    "additionalProperties": _FIELD_SCHEMA,
}}}}
SOURCE_PARAMETER = {"name": SOURCE_HEADER, "in": "header", "required": False,
                    "schema": {"type": "string", "enum": list(UPLOAD_SOURCES)},
                    "description": "BULK marks calls of an `ingestd upload` job."}


@router.post(
    "/calls/upload", status_code=201, summary="Upload one recording",
    responses={201: {"model": UploadEnvelope, "description": "Accepted: the call is PENDING"},
               **error_responses(400, 401, 403, 409, 413, 415, 429, 500)},
    openapi_extra={"requestBody": REQUEST_BODY, "parameters": [SOURCE_PARAMETER]},
)
async def upload_call(request: Request, key: VerifiedKey = Depends(require_key)) -> Response:
    """Stream one recording (or fetch ``audio_url``) and create its call, ``PENDING``."""
    ctx = api_context(request)
    source = _source(request.headers.get(SOURCE_HEADER))
    await _check_campaign(ctx, key.campaign_id)
    bucket = rate_bucket(request)
    if not ctx.limiter.acquire_upload(bucket):
        raise ApiError(429, f"{ctx.limiter.max_uploads} uploads of this key are already "
                            "running; retry when one has finished",
                       headers={"Retry-After": "1"}, retry_after=1)
    try:
        data = await _receive_and_accept(request, ctx, key, source)
    except ApiError as exc:
        ctx.uploads["rejected" if exc.status < 500 else "failed"] += 1
        if exc.status == 409:
            ctx.uploads["duplicate"] += 1
        raise
    finally:
        ctx.limiter.release_upload(bucket)
    ctx.uploads["accepted"] += 1
    log.info("upload_accepted call_id=%s campaign_id=%s source=%s request_id=%s",
             data["call_id"], key.campaign_id, source.value, request_id(request))
    return Response(success_body(data, request_id(request), ctx.clock), status_code=201,
                    media_type="application/json")


async def _receive_and_accept(request: Request, ctx: ApiContext, key: VerifiedKey,
                              source: CallSource) -> dict[str, Any]:
    form = await _receive(request, ctx)
    try:
        fields = dict(form.fields)
        url = fields.pop(URL_FIELD, None)
        if url and form.path is not None:
            raise ApiError(400, f"give either {FILE_FIELD} or {URL_FIELD}, not both")
        meta = _metadata(fields)
        if form.path is None:
            form = await _fetch(ctx, url)
        return await _accept(ctx, key, source, form, meta)
    finally:
        form.discard()


async def _receive(request: Request, ctx: ApiContext) -> ReceivedForm:
    boundary = multipart_boundary(request.headers.get("content-type"))
    limit = ctx.settings.limits.max_file_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise ApiError(413, f"file too large: the request announces {declared} bytes, over "
                            f"the limit of {limit} bytes")
    try:
        return await receive_form(request.stream(), boundary, ctx.settings.incoming_path, limit)
    except ClientDisconnect as exc:
        log.info("upload_interrupted request_id=%s", request_id(request))
        raise ApiError(400, "the client disconnected before the upload was complete; "
                            "nothing was kept") from exc


async def _fetch(ctx: ApiContext, url: str | None) -> ReceivedForm:
    if not url:
        raise ApiError(400, f"send the recording as the {FILE_FIELD!r} field or give "
                            f"{URL_FIELD!r}")
    http = ctx.settings.http
    return await asyncio.to_thread(remote.download, url, ctx.settings.incoming_path,
                                   ctx.settings.limits.max_file_bytes,
                                   http.audio_url_timeout_seconds, http.allow_private_urls)


def _metadata(fields: dict[str, str]) -> dict[str, Any]:
    cleaned, warnings = metadata.clean(fields)
    if warnings:
        raise ApiError(400, "; ".join(warnings))
    return cleaned


async def _accept(ctx: ApiContext, key: VerifiedKey, source: CallSource, form: ReceivedForm,
                  meta: dict[str, Any]) -> dict[str, Any]:
    assert form.path is not None and form.file_name is not None
    if not audio.is_audio_name(form.file_name):
        raise ApiError(415, f"unsupported file type {form.file_name!r}: expected one of "
                            f"{', '.join(sorted(audio.AUDIO_EXTENSIONS))}")
    sub = Submission(campaign_id=key.campaign_id, source=source, file_name=form.file_name,
                     path=form.path, metadata=meta)
    return await asyncio.to_thread(_accept_blocking, ctx, sub)


def _accept_blocking(ctx: ApiContext, sub: Submission) -> dict[str, Any]:
    try:
        accepted = ctx.intake.accept(sub, record_duplicate=False)
    except errors.DuplicateUpload as exc:
        raise ApiError(409, exc.reason, existing_call_id=exc.existing_call_id) from exc
    except errors.UploadRejected as exc:
        raise rejection(exc.reason) from exc
    except errors.NotFound as exc:
        raise ApiError(404, exc.message) from exc
    with ctx.db.session() as session:
        call = session.get(Call, accepted.call_id)
        assert call is not None
        return {"call_id": call.id, "file_name": call.file_name, "status": call.status,
                "campaign_id": call.campaign_id,
                "created_at": isoformat(call.created_at)}


def rejection(reason: str) -> ApiError:
    """The HTTP answer for an intake refusal: limits are 400/413, undecodable bytes 415."""
    if reason.startswith(("too short", "too long", "empty file")):
        return ApiError(400, reason)
    if reason.startswith("too large"):
        return ApiError(413, reason)
    return ApiError(415, reason)


async def _check_campaign(ctx: ApiContext, campaign_id: str) -> None:
    def archived() -> bool | None:
        with ctx.db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            return None if campaign is None else campaign.archived

    state = await asyncio.to_thread(archived)
    if state is None:
        raise ApiError(401, "the key's campaign no longer exists")
    if state:
        raise ApiError(403, "the campaign is archived: it accepts no uploads "
                            "(`ingestd campaign unarchive` reopens it)")


def _source(raw: str | None) -> CallSource:
    if raw is None:
        return CallSource.API
    source = UPLOAD_SOURCES.get(raw.strip().upper())
    if source is None:
        raise ApiError(400, f"{SOURCE_HEADER} must be API or BULK (got {raw!r})")
    return source

