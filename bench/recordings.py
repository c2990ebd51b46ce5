"""Synthetic recordings for the benchmarks: valid PCM WAV files of any size, all distinct.

Each file is a canonical 44-byte WAV header followed by seeded pseudo-random PCM (noise is
valid audio): ffprobe accepts it, the intake reads its duration from the checked header, and no
two files share a sha256, so none is a duplicate. Generating is I/O bound (about 1 GB/s of
``random.randbytes``), far cheaper than ffmpeg.
"""

from __future__ import annotations

import csv
import random
import struct
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    channels: int
    bits: int  # 8 (unsigned) or 16 (signed little-endian)

    @property
    def byte_rate(self) -> int:
        return self.rate * self.channels * self.bits // 8


# 10.5 s of 8 kHz 8-bit mono is 84 KB: the smallest file the default intake limits accept.
TELEPHONY = PcmFormat(8000, 1, 8)
# 192 KB/s: a 500 MB or 1 GiB file stays under the default 3 h duration limit.
STUDIO = PcmFormat(48000, 2, 16)
SMALLEST_VALID_SECONDS = 10.5


def wav_header(data_size: int, fmt: PcmFormat) -> bytes:
    block_align = fmt.channels * fmt.bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, fmt.channels, fmt.rate, fmt.byte_rate,
                                    block_align, fmt.bits)
            + b"data" + struct.pack("<I", data_size))


def write_wav(path: Path, total_bytes: int, seed: int, fmt: PcmFormat = TELEPHONY) -> Path:
    """A WAV of exactly ``total_bytes`` (header included) with content unique to ``seed``."""
    block_align = fmt.channels * fmt.bits // 8
    data_size = max(total_bytes - 44, block_align) // block_align * block_align
    rng = random.Random(seed)
    with path.open("wb") as fh:
        fh.write(wav_header(data_size, fmt))
        left = data_size
        while left:
            step = min(left, CHUNK)
            fh.write(rng.randbytes(step))
            left -= step
    return path


def smallest_valid_bytes() -> int:
    return 44 + int(TELEPHONY.byte_rate * SMALLEST_VALID_SECONDS)


def make_set(folder: Path, count: int, size: int, seed: int, prefix: str = "rec",
             fmt: PcmFormat = TELEPHONY) -> list[Path]:
    """``count`` distinct WAVs of ``size`` bytes named ``<prefix>-00001.wav`` … in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(count)))
    return [write_wav(folder / f"{prefix}-{i:0{width}d}.wav", size, seed * 1_000_003 + i, fmt)
            for i in range(1, count + 1)]


def write_manifest(path: Path, names: list[str]) -> Path:
    """A CSV manifest naming ``names`` with a customer id each (as a telephony export would)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file_name", "customer_id", "call_type"])
        for i, name in enumerate(names):
            writer.writerow([name, f"C{i:07d}", "INBOUND"])
    return path
