"""Offline transcription with PocketSphinx: the stock US-English acoustic model with a call-centre
language model built for the campaign's check phrases (``pocketsphinx_lm``).

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

Recognition (measured with ``bench/wer.py`` on the eight corpus calls): the stock language model
gets about 81 % of the words wrong, the adapted model about 65 %. Each utterance is decoded with
``PAD_SECONDS`` of silence either side (the VAD cuts right at the speech, and the acoustic model
expects silence around a word) and with a fixed ±2 LSB dither (digital silence otherwise gives
log-energy outliers; PocketSphinx's own ``-dither`` draws from one generator per Decoder, so a
transcript would depend on what that thread decoded before). Beams, ``-lw``, ``-wip``,
``-fillprob``, ``-silprob``, frequency warping and noise removal changed the error rate by less
than the run-to-run spread; the filter-bank settings (``-upperf`` for 8 kHz calls) are fixed by the
acoustic model's ``feat.params``. What remains is the acoustic model hearing synthetic voices.

CPU-bound: runs in a worker thread; each thread keeps its own Decoders, one per language model
(loading takes ~0.25 s, a Decoder is not safe to share between threads).
"""

from __future__ import annotations

import array
import asyncio
import math
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import pocketsphinx

from ingestd import errors
from ingestd.models import Speaker
from pipeline import decode
from pipeline.transcribe.base import Transcript, Utterance
from pipeline.transcribe.pocketsphinx_lm import LanguageModelCache

PROVIDER = "pocketsphinx"
FRAME_SECONDS = 0.01
PAUSE_SECONDS = 0.4
MIN_SPEECH_SECONDS = 0.1
# RMS of a 16-bit frame below which it is silence whatever the Vad says (about -50 dBFS).
ENERGY_FLOOR = 100.0
PAD_SECONDS = 0.1
DITHER_LSB = 2
# Ten seconds of noise, repeated over longer utterances (a pattern far below the speech).
_NOISE = random.Random(1)
_DITHER = array.array("h", (_NOISE.randint(-DITHER_LSB, DITHER_LSB)
                            for _ in range(decode.SAMPLE_RATE * 10)))
# Decoders kept per thread (one per language model, i.e. per campaign's set of check phrases).
DECODERS_PER_THREAD = 4

_thread_state = threading.local()


@dataclass(frozen=True)
class SpeechSpan:
    start: float
    end: float
    pcm: bytes


class PocketsphinxTranscriber:
    """The offline default transcriber (see the module docstring).

    ``model_dir`` caches the adapted language models (default: a temp directory);
    ``adapted=False`` decodes with the stock language model (the benchmark's baseline).
    """

    provider = PROVIDER

    def __init__(self, model_dir: Path | None = None, adapted: bool = True) -> None:
        self.models = LanguageModelCache(model_dir)
        self.adapted = adapted

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        """Transcribe in a worker thread; ProviderError when the audio cannot be decoded.

        A thread cannot be killed: when this coroutine is cancelled (worker shutdown), the
        thread is told to stop at the next utterance so shutdown does not wait for the call.
        """
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self.transcribe_blocking, audio_path, agent_channel,
                                           cancelled, hints)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def transcribe_blocking(self, audio_path: Path, agent_channel: int,
                            cancelled: threading.Event | None = None,
                            hints: tuple[str, ...] = ()) -> Transcript:
        """The synchronous body of :meth:`transcribe`."""
        language_model = self.language_model(hints)
        audio = decode.decode(audio_path)
        separated = len(audio.channels) > 1
        utterances: list[Utterance] = []
        for channel, pcm in enumerate(audio.channels):
            speaker = _speaker_of(channel, agent_channel) if separated else Speaker.UNKNOWN
            for span in speech_spans(pcm, audio.sample_rate):
                if cancelled is not None and cancelled.is_set():
                    raise errors.ProviderError("transcription cancelled", retryable=True)
                text = recognise(span.pcm, language_model)
                if text:
                    utterances.append(Utterance(speaker=speaker, channel=channel,
                                                start=span.start, end=span.end, text=text))
        utterances.sort(key=lambda u: (u.start, u.channel or 0))
        return Transcript(utterances=tuple(utterances), separated=separated, provider=PROVIDER)

    def language_model(self, hints: tuple[str, ...]) -> Path | None:
        """The adapted model for ``hints`` (built on first use), or None for the stock model."""
        if not self.adapted:
            return None
        try:
            return self.models.model_for(hints)
        except OSError as exc:
            raise errors.ProviderError(
                f"could not build the language model in {self.models.cache_dir}: {exc}",
                retryable=False) from exc


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


def recognise(pcm: bytes, language_model: Path | None = None) -> str:
    """The words PocketSphinx hears in one utterance of 16 kHz PCM ('' when none);
    ``language_model`` is an ARPA file, None for the stock model."""
    padding = bytes(round(PAD_SECONDS * decode.SAMPLE_RATE) * decode.BYTES_PER_SAMPLE)
    try:
        decoder = _thread_decoder(language_model)  # a broken model file fails here
        decoder.start_utt()
        decoder.process_raw(dithered(padding + pcm + padding), full_utt=True)
        decoder.end_utt()
    except RuntimeError as exc:
        raise errors.ProviderError(f"pocketsphinx failed to decode: {exc}") from exc
    hypothesis = decoder.hyp()
    return hypothesis.hypstr.strip() if hypothesis is not None else ""


def _thread_decoder(language_model: Path | None) -> pocketsphinx.Decoder:
    decoders: dict[Path | None, pocketsphinx.Decoder] = _thread_state.__dict__.setdefault(
        "decoders", {})
    decoder = decoders.pop(language_model, None)
    if decoder is None:
        options = {"lm": str(language_model)} if language_model is not None else {}
        decoder = pocketsphinx.Decoder(samprate=decode.SAMPLE_RATE, loglevel="FATAL", **options)
        if len(decoders) >= DECODERS_PER_THREAD:
            decoders.pop(next(iter(decoders)))  # least recently used goes first
    decoders[language_model] = decoder  # re-inserted: most recently used last
    return decoder


def dithered(pcm: bytes) -> bytes:
    """``pcm`` plus the fixed low-level noise ``_DITHER`` (the same input gives the same output)."""
    samples = array.array("h", pcm)
    noise, period = _DITHER, len(_DITHER)
    for index, sample in enumerate(samples):
        samples[index] = max(-32768, min(32767, sample + noise[index % period]))
    return samples.tobytes()


def _speaker_of(channel: int, agent_channel: int) -> Speaker:
    return Speaker.AGENT if channel == agent_channel else Speaker.CUSTOMER


def _rms(frame: bytes) -> float:
    samples = array.array("h", frame)
    return math.sqrt(math.fsum(s * s for s in samples) / max(len(samples), 1))
