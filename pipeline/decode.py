"""Decode any accepted recording to 16 kHz signed 16-bit little-endian PCM, one buffer per channel.

ffmpeg does the work in a subprocess, so every corpus container and codec (µ-law WAV, Opus in
WebM, AAC in an MP4 that also carries video) takes the same path. Only the first audio stream is
decoded (``-map 0:a:0``): a video stream or a second audio track is ignored. Stereo output comes
back interleaved and is split here into left and right. Blocking: call from a worker thread.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ingestd import errors

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2
DECODE_TIMEOUT_SECONDS = 600
# More than two channels is not a call layout we know how to label; keep the first two.
MAX_CHANNELS = 2


@dataclass(frozen=True)
class DecodedAudio:
    """Mono PCM buffers (s16le), one per channel, all at ``sample_rate``."""

    channels: tuple[bytes, ...]
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds of the longest channel."""
        longest = max((len(pcm) for pcm in self.channels), default=0)
        return longest / BYTES_PER_SAMPLE / self.sample_rate


def decode(path: Path, sample_rate: int = SAMPLE_RATE) -> DecodedAudio:
    """Decode ``path`` to PCM; raise a non-retryable ProviderError when it cannot be read."""
    channel_count = channel_count_of(path)
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
            "-map", "0:a:0", "-ac", str(channel_count), "-ar", str(sample_rate),
            "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]
    result = _run(argv)
    if result.returncode != 0:
        raise errors.ProviderError(
            f"could not decode the recording: {_first_line(result.stderr)}", retryable=False)
    return DecodedAudio(channels=split_channels(result.stdout, channel_count),
                        sample_rate=sample_rate)


def split_channels(interleaved: bytes, channel_count: int) -> tuple[bytes, ...]:
    """De-interleave s16le frames into one mono buffer per channel."""
    if channel_count == 1:
        return (interleaved,)
    frame_bytes = BYTES_PER_SAMPLE * channel_count
    usable = len(interleaved) - len(interleaved) % frame_bytes
    view = memoryview(interleaved)[:usable].cast("h")
    return tuple(view[index::channel_count].tobytes() for index in range(channel_count))


def channel_count_of(path: Path) -> int:
    """Channels of the first audio stream, capped at two (blocking: runs ffprobe)."""
    return min(_probe_channels(path), MAX_CHANNELS)


def _probe_channels(path: Path) -> int:
    result = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                   "stream=channels", "-of", "csv=p=0", str(path)])
    text = result.stdout.decode(errors="replace").strip().splitlines()
    if result.returncode != 0 or not text or not text[0].strip().isdigit():
        raise errors.ProviderError(
            f"could not read the recording's audio stream: {_first_line(result.stderr)}",
            retryable=False)
    return max(int(text[0].strip()), 1)


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=DECODE_TIMEOUT_SECONDS,
                              check=False)
    except FileNotFoundError as exc:
        raise errors.ProviderError(f"{argv[0]} is not installed (needed to decode audio)",
                                   retryable=False) from exc
    except subprocess.TimeoutExpired as exc:
        raise errors.ProviderError(f"decoding timed out after {exc.timeout:g} s",
                                   retryable=False) from exc


def _first_line(stderr: bytes) -> str:
    for line in stderr.decode(errors="replace").splitlines():
        if line.strip():
            return line.split(": ", 1)[-1].strip()
    return "no audio decoded"
