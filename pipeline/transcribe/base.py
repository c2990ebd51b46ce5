"""The transcription seam: a ``Transcriber`` turns a recording into speaker-labelled utterances.

Implementations live one per module (``pocketsphinx`` offline; ``deepgram`` and ``assemblyai``
through their SDKs) and are picked by name with :func:`build_transcriber`. A name this build
cannot serve is a non-retryable ``ProviderError``: the call fails with that reason rather than
getting an invented transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ingestd import errors
from ingestd.config import Settings
from ingestd.models import Speaker
from pipeline import provider


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech by one speaker; times in seconds from the start of the audio."""

    speaker: Speaker
    channel: int | None
    start: float
    end: float
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"speaker": self.speaker.value, "channel": self.channel,
                "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Utterance:
        return cls(speaker=Speaker(data["speaker"]), channel=data.get("channel"),
                   start=float(data["start"]), end=float(data["end"]), text=str(data["text"]))


@dataclass(frozen=True)
class Transcript:
    """Utterances sorted by start; ``separated`` is False when speakers could not be told apart."""

    utterances: tuple[Utterance, ...]
    separated: bool
    provider: str

    def to_json(self) -> dict[str, Any]:
        """The shape stored in a transcript CallVersion (the provider goes in its own column)."""
        return {"utterances": [u.to_json() for u in self.utterances],
                "separated": self.separated}

    @classmethod
    def from_json(cls, data: dict[str, Any], provider: str) -> Transcript:
        utterances = tuple(Utterance.from_json(u) for u in data.get("utterances", []))
        return cls(utterances=utterances, separated=bool(data.get("separated")),
                   provider=provider)


class Transcriber(Protocol):
    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        """Transcribe the recording at ``audio_path``; stereo channel ``agent_channel`` is the
        agent. ``hints`` are phrases the campaign listens for (its checks' phrases): a provider
        may use them to bias recognition (keywords, a language model) but never to invent text.
        Raises ProviderError (``retryable`` says whether trying later may help)."""
        ...


def speaker_for_channel(channel: int, agent_channel: int) -> Speaker:
    """Stereo layout: the campaign's agent channel is the agent, any other is the customer."""
    return Speaker.AGENT if channel == agent_channel else Speaker.CUSTOMER


def build_transcriber(name: str, settings: Settings) -> Transcriber:
    """The transcriber called ``name``; ProviderError (not retryable) when this build lacks it
    or its API key is not set."""
    if name == "pocketsphinx":
        from pipeline.transcribe.pocketsphinx import PocketsphinxTranscriber

        return PocketsphinxTranscriber(model_dir=settings.data_path / "models")
    if name == "deepgram":
        from pipeline.transcribe.deepgram import DeepgramTranscriber

        return DeepgramTranscriber(provider.api_key("DEEPGRAM_API_KEY"), settings.deepgram)
    if name == "assemblyai":
        from pipeline.transcribe.assemblyai import AssemblyaiTranscriber

        return AssemblyaiTranscriber(provider.api_key("ASSEMBLYAI_API_KEY"),
                                     settings.assemblyai)
    raise errors.ProviderError(f"transcriber {name!r} is not available in this build",
                               retryable=False)
