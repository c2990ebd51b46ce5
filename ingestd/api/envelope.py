"""The response envelope of SPEC §5, the one API error type, and their OpenAPI schemas.

Every response is ``{"success": true, "data": …, "meta": {"request_id", "timestamp"}}`` or
``{"success": false, "error": {"code", "message", …}, "meta": …}``. Handlers raise
:class:`ApiError`; the app's exception handlers and middleware turn it (and the framework's own
404/405/validation errors, and anything unexpected) into the error envelope, so no response
leaves the server in another shape.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from ingestd.clock import Clock, isoformat

CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "DUPLICATE",
    413: "FILE_TOO_LARGE",
    415: "UNSUPPORTED_FORMAT",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """A refusal with its HTTP status, SPEC code and a message an operator understands.

    ``extra`` fields go inside ``error`` (``existing_call_id``, ``retry_after``).
    """

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "ERROR")
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def meta(request_id: str, clock: Clock) -> dict[str, str]:
    return {"request_id": request_id, "timestamp": isoformat(clock.now()) or ""}


def success_body(data: Any, request_id: str, clock: Clock) -> bytes:
    return _dump({"success": True, "data": data, "meta": meta(request_id, clock)})


def error_body(error: ApiError, request_id: str, clock: Clock) -> bytes:
    body = {"code": error.code, "message": error.message, **error.extra}
    return _dump({"success": False, "error": body, "meta": meta(request_id, clock)})


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode("utf-8")


# --- OpenAPI schemas: documentation of the shapes above, per route ----------------------------


class Meta(BaseModel):
    request_id: str
    timestamp: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    existing_call_id: str | None = None  # 409 DUPLICATE only
    retry_after: int | None = None  # 429 RATE_LIMITED only


class ErrorEnvelope(BaseModel):
    success: Literal[False]
    error: ErrorDetail
    meta: Meta


class UploadData(BaseModel):
    call_id: str
    file_name: str
    status: Literal["PENDING"]
    campaign_id: str
    created_at: str


class UploadEnvelope(BaseModel):
    success: Literal[True]
    data: UploadData
    meta: Meta


class CallIdsData(BaseModel):
    call_ids: list[str]
    total: int
    limit: int
    offset: int
    has_more: bool


class CallIdsEnvelope(BaseModel):
    success: Literal[True]
    data: CallIdsData
    meta: Meta


class ObjectEnvelope(BaseModel):
    """A call or batch view (the JSON of ``ingestd call show``/``batch show --json``)."""

    success: Literal[True]
    data: dict[str, Any]
    meta: Meta


class BatchListData(BaseModel):
    batches: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    has_more: bool


class BatchListEnvelope(BaseModel):
    success: Literal[True]
    data: BatchListData
    meta: Meta


class HealthData(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


class HealthEnvelope(BaseModel):
    success: Literal[True]
    data: HealthData
    meta: Meta


ERROR_DESCRIPTIONS = {
    400: "VALIDATION_ERROR: a field, parameter or the recording is invalid (message says which)",
    401: "UNAUTHORIZED: missing, unknown or revoked X-API-Key",
    403: "FORBIDDEN: the key's campaign is archived",
    404: "NOT_FOUND: no such object in the key's campaign",
    409: "DUPLICATE: the recording duplicates error.existing_call_id",
    413: "FILE_TOO_LARGE: the upload passed limits.max_file_bytes",
    415: "UNSUPPORTED_FORMAT: not an accepted audio type, or the bytes are not decodable audio",
    429: "RATE_LIMITED: too many requests or concurrent uploads; retry after error.retry_after s",
    500: "INTERNAL_ERROR: the server failed; nothing was kept",
    503: "UNAVAILABLE: the database does not answer",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries documenting these error statuses with the error envelope."""
    return {status: {"model": ErrorEnvelope, "description": ERROR_DESCRIPTIONS[status]}
            for status in statuses}
