"""AssemblyAI's asynchronous transcription API through the ``assemblyai`` SDK.

The SDK uploads the file (``POST /v2/upload``), creates the transcript (``POST /v2/transcript``)
and polls it (``GET /v2/transcript/{id}``) until it is ``completed`` or ``error``. A stereo call
is sent with ``multichannel``: every utterance carries its channel (numbered from 1), so the
speaker follows from the channel. A mono call is sent with ``speaker_labels``; AssemblyAI's
letters (A, B, …) do not say who the agent is, so — as for Deepgram, see ``deepgram`` — mono
utterances keep their turns and get speaker ``unknown``.

Each transcription gets its own ``AsyncClient`` built from a private ``Settings`` (base URL from
``assemblyai.base_url``, the HTTP timeout, the polling interval), so the SDK's global settings are
never touched. AssemblyAI types never leave this module.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import assemblyai as aai
import httpx

from ingestd import errors
from ingestd.config import AssemblyaiSettings
from ingestd.models import Speaker
from pipeline import decode, provider
from pipeline.provider import retryable_status
from pipeline.transcribe.base import Transcript, Utterance, speaker_for_channel

POLL_SECONDS = 3.0


class AssemblyaiTranscriber:
    """Transcribes one recording per call to :meth:`transcribe`."""

    provider = "assemblyai"

    def __init__(self, api_key: str, settings: AssemblyaiSettings,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.api_key = api_key
        self.settings = settings
        self.poll_seconds = poll_seconds

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        """Upload, wait for the transcript, map its utterances. ``hints`` are not sent: the
        boosting options AssemblyAI offers depend on the speech model chosen server-side."""
        stereo = await asyncio.to_thread(decode.channel_count_of, audio_path) == 2
        try:
            result = await self._request(audio_path, stereo)
        except aai.types.AssemblyAIError as exc:
            raise _translate(exc, self.settings.timeout_seconds) from exc
        except httpx.TransportError as exc:  # timeouts included
            raise provider.transport_failure("AssemblyAI", exc,
                                             self.settings.timeout_seconds) from exc
        return result_transcript(result, stereo, agent_channel)

    async def _request(self, audio_path: Path, stereo: bool) -> aai.AsyncTranscript:
        options: dict[str, object] = {"api_key": self.api_key,
                                      "polling_interval": self.poll_seconds,
                                      "http_timeout": self.settings.timeout_seconds}
        if self.settings.base_url:
            options["base_url"] = self.settings.base_url.rstrip("/")
        settings = aai.types.Settings(**options)
        config = aai.TranscriptionConfig(multichannel=True if stereo else None,
                                         speaker_labels=None if stereo else True)
        async with aai.AsyncClient(settings=settings) as client:
            transcriber = aai.AsyncTranscriber(client=client, config=config)
            transcript = await transcriber.transcribe(
                str(audio_path), poll_timeout=self.settings.timeout_seconds)
        if transcript.status == aai.TranscriptStatus.error:
            # The service read the file and gave up on it: sending it again will not help.
            raise errors.ProviderError(f"AssemblyAI could not transcribe the recording: "
                                       f"{transcript.error or 'no reason given'}",
                                       retryable=False)
        return transcript


def result_transcript(transcript: aai.AsyncTranscript, stereo: bool,
                      agent_channel: int) -> Transcript:
    """AssemblyAI's utterances (milliseconds) as a Transcript (seconds)."""
    utterances = []
    for item in transcript.utterances or ():
        text = (item.text or "").strip()
        if not text:
            continue
        channel = _channel_index(item.channel) if stereo else None
        speaker = (speaker_for_channel(channel, agent_channel) if channel is not None
                   else Speaker.UNKNOWN)
        utterances.append(Utterance(speaker=speaker, channel=channel, start=item.start / 1000,
                                    end=item.end / 1000, text=text))
    utterances.sort(key=lambda u: (u.start, u.channel or 0))
    return Transcript(utterances=tuple(utterances), separated=stereo, provider="assemblyai")


def _channel_index(channel: str | None) -> int | None:
    """AssemblyAI numbers channels from "1"; ours count from 0 like the audio's streams."""
    if channel is None or not str(channel).strip().isdigit():
        return None
    return int(channel) - 1


def _translate(exc: aai.types.AssemblyAIError, timeout: float) -> errors.ProviderError:
    status = getattr(exc, "status_code", None)
    message = str(exc).strip()
    if status is None and "poll" in message.lower():
        return errors.ProviderError(f"AssemblyAI did not finish within {timeout:g} s",
                                    retryable=True)
    if status is None:
        return errors.ProviderError(f"AssemblyAI failed: {message}", retryable=True)
    return errors.ProviderError(f"AssemblyAI answered HTTP {status}: {message}",
                                retryable=retryable_status(status))
