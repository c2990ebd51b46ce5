"""Offline transcription with PocketSphinx and its stock US-English model.

Each channel is decoded to 16 kHz PCM, cut into utterances by voice activity, and every utterance
is recognised on its own. Stereo calls carry one party per channel, so the channel names the
speaker; a mono call has no separation offline (speaker ``unknown``).

Voice activity is PocketSphinx's WebRTC-style ``Vad`` per 10 ms frame, gated by an energy floor:
the Vad alone keeps "speech" running through stretches of digital silence (the corpus stereo
calls are exactly zero on one channel while the other party talks), which glued neighbouring
utterances together and left ends ~0.16 s late. An utterance ends at the first pause longer than
``PAUSE_SECONDS``; the corpus voices pause up to ~0.37 s inside a turn and at least ~0.4 s between
turns on the same channel. Measured on the eight corpus calls: every truth utterance found once,
starts and ends within 0.07 s.

CPU-bound: runs in a worker thread; each thread keeps its own Decoder (loading the model takes
~0.25 s, a Decoder is not safe to share between threads).
"""

from __future__ import annotations

import array
import asyncio
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pocketsphinx

from ingestd import errors
from ingestd.models import Speaker
from pipeline import decode
from pipeline.transcribe.base import Transcript, Utterance

PROVIDER = "pocketsphinx"
FRAME_SECONDS = 0.01
PAUSE_SECONDS = 0.4
MIN_SPEECH_SECONDS = 0.1
# RMS of a 16-bit frame below which it is silence whatever the Vad says (about -50 dBFS).
ENERGY_FLOOR = 100.0

_thread_state = threading.local()


@dataclass(frozen=True)
class SpeechSpan:
    start: float
    end: float
    pcm: bytes


class PocketsphinxTranscriber:
    """The offline default transcriber (see the module docstring)."""

    provider = PROVIDER

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        """Transcribe in a worker thread; ProviderError when the audio cannot be decoded.

        A thread cannot be killed: when this coroutine is cancelled (worker shutdown), the
        thread is told to stop at the next utterance so shutdown does not wait for the call.
        """
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self.transcribe_blocking, audio_path, agent_channel,
                                           cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def transcribe_blocking(self, audio_path: Path, agent_channel: int,
                            cancelled: threading.Event | None = None) -> Transcript:
        """The synchronous body of :meth:`transcribe`."""
        audio = decode.decode(audio_path)
        separated = len(audio.channels) > 1
        utterances: list[Utterance] = []
        for channel, pcm in enumerate(audio.channels):
            speaker = _speaker_of(channel, agent_channel) if separated else Speaker.UNKNOWN
            for span in speech_spans(pcm, audio.sample_rate):
                if cancelled is not None and cancelled.is_set():
                    raise errors.ProviderError("transcription cancelled", retryable=True)
                text = recognise(span.pcm)
                if text:
                    utterances.append(Utterance(speaker=speaker, channel=channel,
                                                start=span.start, end=span.end, text=text))
        utterances.sort(key=lambda u: (u.start, u.channel or 0))
        return Transcript(utterances=tuple(utterances), separated=separated, provider=PROVIDER)


def speech_spans(pcm: bytes, sample_rate: int) -> list[SpeechSpan]:
    """Cut one channel of s16le PCM into spans of speech separated by pauses."""
    vad = pocketsphinx.Vad(mode=0, sample_rate=sample_rate, frame_length=FRAME_SECONDS)
    frame_bytes, frame_seconds = vad.frame_bytes, vad.frame_length
    bounds: list[list[int]] = []  # [first frame, last frame] of each span
    pause_frames = round(PAUSE_SECONDS / frame_seconds)
    for index in range(len(pcm) // frame_bytes):
        frame = pcm[index * frame_bytes:(index + 1) * frame_bytes]
        if _rms(frame) < ENERGY_FLOOR or not vad.is_speech(frame):
            continue
        if bounds and index - bounds[-1][1] <= pause_frames:
            bounds[-1][1] = index
        else:
            bounds.append([index, index])
    spans = []
    for first, last in bounds:
        start, end = first * frame_seconds, (last + 1) * frame_seconds
        if end - start >= MIN_SPEECH_SECONDS:
            spans.append(SpeechSpan(start=start, end=end,
                                    pcm=pcm[first * frame_bytes:(last + 1) * frame_bytes]))
    return spans


def recognise(pcm: bytes) -> str:
    """The words PocketSphinx hears in one utterance of 16 kHz PCM ('' when none)."""
    decoder = _thread_decoder()
    try:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
    except RuntimeError as exc:
        raise errors.ProviderError(f"pocketsphinx failed to decode: {exc}") from exc
    hypothesis = decoder.hyp()
    return hypothesis.hypstr.strip() if hypothesis is not None else ""


def _thread_decoder() -> pocketsphinx.Decoder:
    decoder = getattr(_thread_state, "decoder", None)
    if decoder is None:
        decoder = pocketsphinx.Decoder(samprate=decode.SAMPLE_RATE, loglevel="FATAL")
        _thread_state.decoder = decoder
    return decoder


def _speaker_of(channel: int, agent_channel: int) -> Speaker:
    return Speaker.AGENT if channel == agent_channel else Speaker.CUSTOMER


def _rms(frame: bytes) -> float:
    samples = array.array("h", frame)
    return math.sqrt(math.fsum(s * s for s in samples) / max(len(samples), 1))
