"""Loopback doubles of Deepgram, AssemblyAI and Anthropic answering with their documented shapes.

- Deepgram ``POST /v1/listen``: ``{"metadata": {…}, "results": {"channels": […],
  "utterances": [{"start", "end", "confidence", "channel", "transcript", "words", "speaker",
  "id"}]}}``; errors ``{"err_code", "err_msg", "request_id"}``.
- AssemblyAI ``POST /v2/upload`` → ``{"upload_url"}``; ``POST /v2/transcript`` → the transcript
  ``queued``; ``GET /v2/transcript/{id}`` → ``processing`` once, then ``completed`` with
  ``utterances`` (times in ms, ``speaker`` "A"/"B" or the channel "1"/"2", ``channel``) or
  ``error`` with its reason; errors ``{"error": "…"}``.
- Anthropic ``POST /v1/messages`` → a ``message`` whose content is one ``tool_use`` block;
  errors ``{"type": "error", "error": {"type", "message"}}`` (429 rate limit, 529 overloaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakes.loopback import LoopbackServer, Reply, Request


@dataclass(frozen=True)
class Said:
    """One scripted utterance: who (channel and diarized speaker), when, what."""

    start: float
    end: float
    text: str
    channel: int = 0
    speaker: int = 0


def _words(said: Said) -> list[dict[str, Any]]:
    words = said.text.split()
    step = (said.end - said.start) / max(len(words), 1)
    return [{"word": w.lower().strip(".,?!"), "punctuated_word": w,
             "start": said.start + i * step, "end": said.start + (i + 1) * step,
             "confidence": 0.97, "speaker": said.speaker} for i, w in enumerate(words)]


class FakeDeepgram(LoopbackServer):
    def __init__(self, said: list[Said]) -> None:
        super().__init__()
        self.said = said

    def answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/listen":
            return Reply(404, {"err_code": "NOT_FOUND", "err_msg": "Not found."})
        if not request.headers.get("authorization", "").startswith("Token "):
            return Reply(401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."})
        channels = sorted({s.channel for s in self.said}) or [0]
        return Reply(200, {
            "metadata": {"transaction_key": "deprecated", "request_id": "req-1",
                         "sha256": "0" * 64, "created": "2026-01-15T10:00:00.000Z",
                         "duration": max((s.end for s in self.said), default=0.0),
                         "channels": len(channels), "models": ["model-uuid"],
                         "model_info": {"model-uuid": {"name": "general-nova-3",
                                                       "version": "2025", "arch": "nova-3"}}},
            "results": {
                "channels": [{"alternatives": [{
                    "transcript": " ".join(s.text for s in self.said if s.channel == c),
                    "confidence": 0.97,
                    "words": [w for s in self.said if s.channel == c for w in _words(s)]}]}
                    for c in channels],
                "utterances": [{"start": s.start, "end": s.end, "confidence": 0.97,
                                "channel": s.channel, "transcript": s.text,
                                "words": _words(s), "speaker": s.speaker, "id": f"utt-{i}"}
                               for i, s in enumerate(self.said)]}})


class FakeAssemblyai(LoopbackServer):
    def __init__(self, said: list[Said], *, error: str | None = None) -> None:
        super().__init__()
        self.said = said
        self.error = error
        self.created: list[dict[str, Any]] = []
        self._polls = 0

    def answer(self, request: Request) -> Reply:
        if not request.headers.get("authorization"):
            return Reply(401, {"error": "Authentication error, API token missing/invalid"})
        if (request.method, request.path) == ("POST", "/v2/upload"):
            return Reply(200, {"upload_url": f"{self.url}/cdn/upload-1"})
        if (request.method, request.path) == ("POST", "/v2/transcript"):
            self.created.append(request.json())
            return Reply(200, self._transcript("queued"))
        if request.method == "GET" and request.path == "/v2/transcript/tr-1":
            self._polls += 1
            if self._polls == 1:
                return Reply(200, self._transcript("processing"))
            return Reply(200, self._transcript("error" if self.error else "completed"))
        return Reply(404, {"error": "Not found"})

    def _transcript(self, status: str) -> dict[str, Any]:
        multichannel = bool(self.created and self.created[-1].get("multichannel"))
        body: dict[str, Any] = {"id": "tr-1", "status": status,
                                "audio_url": f"{self.url}/cdn/upload-1",
                                "multichannel": multichannel or None}
        if status == "error":
            body["error"] = self.error
        if status == "completed":
            body["text"] = " ".join(s.text for s in self.said)
            body["utterances"] = [self._utterance(s, multichannel) for s in self.said]
            body["audio_channels"] = 2 if multichannel else None
        return body

    @staticmethod
    def _utterance(said: Said, multichannel: bool) -> dict[str, Any]:
        label = str(said.channel + 1) if multichannel else "AB"[said.speaker % 2]
        channel = str(said.channel + 1) if multichannel else None
        words = [{"text": w["punctuated_word"], "start": int(w["start"] * 1000),
                  "end": int(w["end"] * 1000), "confidence": 0.97, "speaker": label,
                  "channel": channel} for w in _words(said)]
        return {"speaker": label, "channel": channel, "text": said.text, "confidence": 0.97,
                "start": int(said.start * 1000), "end": int(said.end * 1000), "words": words}


class FakeAnthropic(LoopbackServer):
    """Answers every message with a ``tool_use`` block carrying ``results``."""

    def __init__(self, results: list[dict[str, Any]], tool_name: str = "record_check_results",
                 ) -> None:
        super().__init__()
        self.results = results
        self.tool_name = tool_name

    def answer(self, request: Request) -> Reply:
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return Reply(404, error_body("not_found_error", "Not found"))
        # This SDK sends the key as a bearer token; older ones as x-api-key.
        if not (request.headers.get("x-api-key")
                or request.headers.get("authorization", "").startswith("Bearer ")):
            return Reply(401, error_body("authentication_error", "invalid x-api-key"))
        model = request.json()["model"]
        return Reply(200, {
            "id": "msg_01", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": "toolu_01", "name": self.tool_name,
                         "input": {"results": self.results}}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 812, "output_tokens": 164}})


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": kind, "message": message}}


class WebhookReceiver(LoopbackServer):
    """A customer's endpoint: 200 for every POST unless a fault is scripted."""

    def answer(self, request: Request) -> Reply:
        return Reply(200, {"ok": True})
