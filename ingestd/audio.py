"""Audio validation at intake: what is this file really, and does it pass the limits?

Headers lie (a truncated mp3 keeps announcing its full length, a VBR mp3 without a length header
is estimated from its first frames; webm carries no reliable length), so for compressed audio the
duration that counts is the one counted from the packets actually present: an ffmpeg stream-copy
pass (no decoding, ~50 ms per minute of audio). Uncompressed WAV (PCM, G.711) is the one case
where the header can be checked against the file itself: a constant number of bytes per second
and a ``data`` chunk that must fit in the file. When it fits, the duration is computed from it
with no second pass; when it does not (a truncated upload), the counted pass decides. ffprobe
gives codec, channels and rate and decides whether the container is audio at all. Blocking: call
from a worker thread.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ingestd import config, errors

AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".m4a", ".mp4", ".webm", ".ogg"})
PROBE_TIMEOUT_SECONDS = 120
# The fmt and data chunk headers sit in the first bytes of any WAV a telephony system writes.
WAV_HEADER_SCAN_BYTES = 64 * 1024
# Read first: a plain header is 44 bytes, so most files need no more.
WAV_HEADER_FIRST_BYTES = 4096
_FFMPEG_CONTEXT = re.compile(r"^\[[^\]]*\]\s*")


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    channels: int
    sample_rate: int
    codec: str


def is_audio_name(name: str) -> bool:
    """True when the file name has one of the accepted audio extensions (any case)."""
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS


def validate(path: Path, limits: config.LimitsSettings) -> AudioInfo:
    """Probe ``path`` and check it against ``limits``; raise UploadRejected with the reason."""
    size = path.stat().st_size
    if size == 0:
        raise errors.UploadRejected("empty file (0 bytes)")
    if size > limits.max_file_bytes:
        raise errors.UploadRejected(
            f"too large: {size} bytes > limit of {limits.max_file_bytes} bytes")
    info = probe(path)
    if info.duration < limits.min_duration_seconds:
        raise errors.UploadRejected(
            f"too short: {info.duration:.1f} s < {limits.min_duration_seconds:g} s")
    if info.duration > limits.max_duration_seconds:
        raise errors.UploadRejected(
            f"too long: {info.duration:.1f} s > {limits.max_duration_seconds:g} s")
    return info


def probe(path: Path) -> AudioInfo:
    """Codec, channels and rate from ffprobe; the duration from a checked WAV header or counted.

    A PCM/G.711 WAV whose header checks out against the file needs no ffprobe at all: its fmt
    chunk says everything ffprobe would, and its bytes are samples by definition.
    """
    known = pcm_wav_info(path)
    if known is not None:
        return known
    stream = _first_audio_stream(path)
    duration = wav_header_duration(path, str(stream.get("codec_name") or ""))
    if duration is None:
        duration = _counted_duration(path)
    return AudioInfo(
        duration=duration,
        channels=int(stream.get("channels") or 0),
        sample_rate=int(stream.get("sample_rate") or 0),
        codec=str(stream.get("codec_name") or "unknown"),
    )


def _first_audio_stream(path: Path) -> dict:
    result = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                   "stream=codec_name,channels,sample_rate", "-of", "json", str(path)])
    if result.returncode != 0:
        detail = _first_line(result.stderr, path)
        raise errors.UploadRejected(f"not a decodable audio file ({detail})")
    streams = json.loads(result.stdout or "{}").get("streams") or []
    if not streams:
        raise errors.UploadRejected("not a decodable audio file (no audio stream)")
    stream = streams[0]
    if not stream.get("channels") or not stream.get("sample_rate"):
        raise errors.UploadRejected("cannot decode: corrupt header (no channels or sample rate)")
    return stream


@dataclass(frozen=True)
class _WavHeader:
    tag: int  # WAVE format tag (1 PCM, 3 float, 6 A-law, 7 µ-law, 0xFFFE extensible, …)
    channels: int
    rate: int
    bits: int
    duration: float


def _checked_wav_header(path: Path) -> _WavHeader | None:
    """The ``fmt `` facts of a ``.wav`` whose ``data`` chunk is a real size (not the
    0/0xFFFFFFFF of a streamed header) that ends within the file; None otherwise, so a
    truncated or still-growing file falls through to the counted pass."""
    if path.suffix.lower() != ".wav":
        return None
    with path.open("rb") as fh:
        head = fh.read(WAV_HEADER_FIRST_BYTES)
        chunks = _riff_chunks(head)
        if b"data" not in chunks and len(head) == WAV_HEADER_FIRST_BYTES:
            chunks = _riff_chunks(head + fh.read(WAV_HEADER_SCAN_BYTES - len(head)))
    fmt, data = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or data is None or len(fmt[1]) < 16:
        return None
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt[1])
    offset, size = data[0], data[2]
    if not rate or not block_align or size in (0, 0xFFFFFFFF):
        return None
    if offset + size > path.stat().st_size:
        return None  # the header announces more than the file holds: truncated
    return _WavHeader(tag=tag, channels=channels, rate=rate, bits=bits,
                      duration=size / block_align / rate)


def wav_header_duration(path: Path, codec: str) -> float | None:
    """The duration of a constant-rate WAV whose header checks out, else None.

    Only codecs with a fixed byte rate qualify (ffprobe's ``pcm_*``: linear PCM, µ-law, A-law,
    also inside an extensible header).
    """
    if not codec.startswith("pcm_"):
        return None
    header = _checked_wav_header(path)
    return header.duration if header else None


# WAVE format tags whose samples take a fixed number of bytes, with ffprobe's codec names.
_PCM_TAGS = {1: "pcm_s{bits}le", 3: "pcm_f{bits}le", 6: "pcm_alaw", 7: "pcm_mulaw"}


def pcm_wav_info(path: Path) -> AudioInfo | None:
    """Everything about a constant-rate WAV from its checked header; None for any other file
    (not ``.wav``, compressed, extensible format, truncated or streamed header)."""
    header = _checked_wav_header(path)
    if header is None or header.tag not in _PCM_TAGS or not header.channels:
        return None
    if (header.tag, header.bits) == (1, 8):
        codec = "pcm_u8"
    else:
        codec = _PCM_TAGS[header.tag].format(bits=header.bits)
    return AudioInfo(duration=header.duration, channels=header.channels,
                     sample_rate=header.rate, codec=codec)


def _riff_chunks(head: bytes) -> dict[bytes, tuple[int, bytes, int]]:
    """The chunks found in the first bytes of a RIFF/WAVE file: id -> (data offset, body, size).

    A chunk's body is cut at the bytes read; only ``fmt `` needs its body.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return {}
    chunks: dict[bytes, tuple[int, bytes, int]] = {}
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        chunks.setdefault(chunk_id, (pos + 8, head[pos + 8:pos + 8 + size], size))
        if chunk_id == b"data":
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    return chunks


def _counted_duration(path: Path) -> float:
    result = _run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
                   "-map", "0:a:0", "-c", "copy", "-f", "null", "-", "-progress", "pipe:1"])
    micros = [line.split("=", 1)[1] for line in result.stdout.splitlines()
              if line.startswith("out_time_us=")]
    if result.returncode != 0 or not micros or not micros[-1].strip().isdigit():
        detail = _first_line(result.stderr, path) or "no audio packets"
        raise errors.UploadRejected(f"truncated or corrupt audio ({detail})")
    return int(micros[-1]) / 1_000_000


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError as exc:
        raise errors.ConfigError(f"{argv[0]} is not installed (needed to read audio)") from exc
    except subprocess.TimeoutExpired as exc:
        raise errors.UploadRejected(f"audio probe timed out after {exc.timeout:g} s") from exc


def _first_line(text: str, path: Path) -> str:
    """ffmpeg's first complaint without its ``[demuxer @ 0x…]`` or ``<path>:`` prefix."""
    for line in text.splitlines():
        line = _FFMPEG_CONTEXT.sub("", line).strip()
        line = line.removeprefix(f"{path}: ").strip()
        if line:
            return line
    return ""
