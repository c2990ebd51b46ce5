"""The FastAPI application: routes under ``/api/v1``, ops endpoints at the root, one error shape.

The framework's own refusals (unknown path 404, wrong method 405, parameter validation) are
answered in the SPEC envelope like the API's own errors; parameter validation is a ``400
VALIDATION_ERROR`` naming the parameter, never FastAPI's ``422``. The OpenAPI document is
post-processed to say exactly that (no 422, the rate-limit headers on every response), so
``/openapi.json`` describes what the server really does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from ingestd.api import ops, reads, uploads
from ingestd.api.context import API_KEY_HEADER, ApiContext, api_context, request_id
from ingestd.api.envelope import ApiError, error_body
from ingestd.api.middleware import ApiMiddleware

API_PREFIX = "/api/v1"
RATE_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per minute for this key (or client address)",
    "X-RateLimit-Remaining": "Requests left in the current one-minute window",
    "X-RateLimit-Reset": "Seconds until the current window ends",
}


def create_app(context: ApiContext) -> FastAPI:
    """The app, serving ``context``'s database and intake."""
    app = FastAPI(title="ingestd", version="1", docs_url=None, redoc_url=None,
                  description="Upload call recordings and read their results (SPEC §5).")
    app.state.api = context
    app.include_router(uploads.router, prefix=API_PREFIX, tags=["calls"])
    app.include_router(reads.router, prefix=API_PREFIX, tags=["read"])
    app.include_router(ops.router, tags=["ops"])
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(ApiMiddleware, context=context)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = error_body(exc, request_id(request), api_context(request).clock)
    return Response(body, status_code=exc.status, media_type="application/json",
                    headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return await _api_error(request, ApiError(exc.status_code, message,
                                              headers=dict(exc.headers or {})))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return await _api_error(request, ApiError(400, "; ".join(problems) or "invalid request"))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description=app.description)
        _document_reality(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _document_reality(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "apiKey", "in": "header", "name": API_KEY_HEADER}
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            operation["responses"].pop("422", None)
            if path.startswith(API_PREFIX):
                operation["security"] = [{"ApiKey": []}]
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                for name, description in RATE_HEADERS.items():
                    headers[name] = {"description": description, "schema": {"type": "integer"},
                                     "required": True}
                if status == "429":
                    headers["Retry-After"] = {"description": "Seconds to wait",
                                              "schema": {"type": "integer"}, "required": True}
