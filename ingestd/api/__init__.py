"""The HTTP API of SPEC §5 (FastAPI, served by uvicorn inside the daemon's loop).

    app.py         the application: routers, error handlers, the OpenAPI document
    middleware.py  request id, key lookup, rate limits and their headers, last-resort 500
    uploads.py     POST /api/v1/calls/upload (streamed multipart or audio_url → intake)
    form.py        the streaming multipart reader;  remote.py  the audio_url download
    reads.py       GET call ids, calls, batches;    ops.py     /healthz, /metrics
    envelope.py    the response envelope, ApiError and the documented schemas
    limits.py      per-key rate limiter;            context.py what the routes share
    server.py      start_http_server() for the daemon

The web framework is imported only inside this package.
"""
