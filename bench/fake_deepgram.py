"""A loopback stand-in for Deepgram's ``POST /v1/listen`` that answers at once.

The pipeline benchmark measures ingestd's own cost per call, so the transcriber must cost
nothing: this server reads the request body and answers a fixed, valid pre-recorded response
(the documented shape: ``metadata`` and ``results`` with ``channels`` and ``utterances``) for a
mono call, with the phrases the benchmark campaign's rule checks look for. Threaded, so several
pipeline workers are served in parallel.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UTTERANCES = [
    (0.4, 2.9, 0, "thank you for calling this is the bench line"),
    (3.2, 6.8, 1, "hello i would like to check my order status"),
    (7.1, 9.9, 0, "sure is there anything else i can help you with today"),
]


def _words(start: float, end: float, text: str, speaker: int) -> list[dict]:
    words = text.split()
    step = (end - start) / len(words)
    return [{"word": w, "punctuated_word": w, "start": start + i * step,
             "end": start + (i + 1) * step, "confidence": 0.98, "speaker": speaker}
            for i, w in enumerate(words)]


RESPONSE = json.dumps({
    "metadata": {"transaction_key": "deprecated", "request_id": "bench", "sha256": "0" * 64,
                 "created": "2026-01-15T10:00:00.000Z", "duration": 10.5, "channels": 1,
                 "models": ["bench"], "model_info": {"bench": {"name": "general-nova-3",
                                                               "version": "2025",
                                                               "arch": "nova-3"}}},
    "results": {
        "channels": [{"alternatives": [{
            "transcript": " ".join(u[3] for u in UTTERANCES), "confidence": 0.98,
            "words": [w for u in UTTERANCES for w in _words(u[0], u[1], u[3], u[2])]}]}],
        "utterances": [{"start": s, "end": e, "confidence": 0.98, "channel": 0,
                        "transcript": t, "words": _words(s, e, t, spk), "speaker": spk,
                        "id": f"utt-{i}"} for i, (s, e, spk, t) in enumerate(UTTERANCES)],
    },
}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if not self.path.startswith("/v1/listen"):
            self._reply(404, b'{"err_code":"NOT_FOUND","err_msg":"Not found."}')
            return
        self.server.requests += 1  # type: ignore[attr-defined]
        self._reply(200, RESPONSE)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:  # quiet: the bench prints its own progress
        pass


class FakeDeepgram:
    """``with FakeDeepgram() as fake: fake.url`` — serves until the block ends."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.requests = 0  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> int:
        return self.server.requests  # type: ignore[attr-defined]

    def __enter__(self) -> FakeDeepgram:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
