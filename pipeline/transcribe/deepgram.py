"""Deepgram's pre-recorded API through deepgram-sdk (v5+: ``listen.v1.media.transcribe_file``).

A stereo call is sent with ``multichannel=true``: Deepgram transcribes each channel on its own
and tags every utterance with its channel, so the speaker follows from the channel (the
campaign's ``agent_channel`` is the agent, the other one the customer). A mono call is sent with
``diarize=true``: Deepgram then separates voices, but its speaker numbers say nothing about who
is the agent (in an outbound call the customer usually speaks first, in an inbound one the
agent), so guessing would mislabel about half the calls. Mono utterances keep Deepgram's turn
boundaries and get speaker ``unknown``; the transcript is not ``separated`` and
speaker-restricted checks run on the whole call, saying so.

The base URL goes through the SDK's environment object (``deepgram.base_url``); the SDK's own
retries are off (see ``pipeline.provider``). Deepgram types never leave this module.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import httpx
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError

with warnings.catch_warnings():
    # The SDK's websocket shim first tries an alias that websockets >= 14 deprecates; it works,
    # and we never open a websocket. Imported here once so the warning cannot surface later.
    warnings.filterwarnings("ignore", message=r"websockets\..* is deprecated")
    import deepgram.core.websocket_compat
    import deepgram.listen.v1.client  # noqa: F401

from ingestd import errors
from ingestd.config import DeepgramSettings
from ingestd.models import Speaker
from pipeline import decode, provider
from pipeline.provider import retryable_status
from pipeline.transcribe.base import Transcript, Utterance, speaker_for_channel


class DeepgramTranscriber:
    """Transcribes one recording per call to :meth:`transcribe`."""

    provider = "deepgram"

    def __init__(self, api_key: str, settings: DeepgramSettings) -> None:
        self.api_key = api_key
        self.settings = settings

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        """Send the recording; map Deepgram's utterances to speaker-labelled ones."""
        stereo = await asyncio.to_thread(decode.channel_count_of, audio_path) == 2
        audio = await asyncio.to_thread(audio_path.read_bytes)
        try:
            results = await self._request(audio, stereo, hints)
        except ApiError as exc:
            raise _translate_status(exc) from exc
        except httpx.TransportError as exc:  # timeouts included
            raise provider.transport_failure("Deepgram", exc,
                                             self.settings.timeout_seconds) from exc
        return _to_transcript(results, stereo, agent_channel)

    async def _request(self, audio: bytes, stereo: bool, hints: tuple[str, ...]) -> object:
        timeout = self.settings.timeout_seconds
        async with httpx.AsyncClient(timeout=timeout) as http:
            client = AsyncDeepgramClient(api_key=self.api_key, environment=self._environment(),
                                         httpx_client=http, timeout=timeout, max_retries=0)
            response = await client.listen.v1.media.transcribe_file(
                request=audio, model=self.settings.model, punctuate=True, utterances=True,
                multichannel=stereo, diarize=not stereo,
                # Key terms bias recognition towards the checks' phrases (Nova-3 only).
                keyterm=list(hints) if hints and self.settings.model.startswith("nova-3")
                else None)
        results = getattr(response, "results", None)
        if results is None:  # a callback acknowledgement: we never ask for one
            raise errors.ProviderError("Deepgram answered without a transcript",
                                       retryable=False)
        return results

    def _environment(self) -> DeepgramClientEnvironment:
        base = self.settings.base_url.rstrip("/")
        if not base:
            return DeepgramClientEnvironment.PRODUCTION
        socket_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return DeepgramClientEnvironment(base=base, production=socket_base, agent=socket_base,
                                         agent_rest=base)


def _to_transcript(results: object, stereo: bool, agent_channel: int) -> Transcript:
    items = getattr(results, "utterances", None)
    if items is None:
        raise errors.ProviderError("Deepgram returned no utterances", retryable=False)
    utterances = []
    for item in items:
        text = (item.transcript or "").strip()
        if not text:
            continue
        channel = int(item.channel or 0) if stereo else None
        speaker = (speaker_for_channel(channel, agent_channel) if channel is not None
                   else Speaker.UNKNOWN)
        utterances.append(Utterance(speaker=speaker, channel=channel, start=item.start or 0.0,
                                    end=item.end or 0.0, text=text))
    utterances.sort(key=lambda u: (u.start, u.channel or 0))
    return Transcript(utterances=tuple(utterances), separated=stereo, provider="deepgram")


def _translate_status(exc: ApiError) -> errors.ProviderError:
    status = exc.status_code
    detail = _error_detail(exc.body)
    return errors.ProviderError(f"Deepgram answered HTTP {status}: {detail}",
                                retryable=retryable_status(status))


def _error_detail(body: object) -> str:
    """Deepgram's ``err_msg`` (or ``message``) when the body is its JSON error."""
    if isinstance(body, dict):
        for key in ("err_msg", "message", "error"):
            if body.get(key):
                return str(body[key])
    return str(body or "no details")[:200]
