"""The duration probe at intake: the WAV header where it can be checked, the counted packets
where headers lie (truncated mp3, VBR mp3, webm). Real ffprobe/ffmpeg on the corpus."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest

from ingestd import audio

TOLERANCE = 0.25  # container padding of the lossy files is below 0.2 s


def pcm_wav(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x02" * int(rate * seconds))
    return out.getvalue()


def test_probe_duration_is_what_decodes_for_every_corpus_recording(corpus: Path) -> None:
    expected = json.loads((corpus / "expected.json").read_text())
    for entry in [*expected["calls"], *expected["bad"]]:
        if entry.get("expect") == "accept":
            info = audio.probe(corpus / entry["path"])
            truth = entry.get("duration", entry.get("decoded_duration"))
            assert abs(info.duration - truth) < TOLERANCE, entry["path"]


def test_truncated_mp3_whose_header_claims_26_s_is_counted_at_what_decodes(
        corpus: Path) -> None:
    info = audio.probe(corpus / "bad" / "bad_truncated_3kb.mp3")
    assert info.duration < 1.0


def test_intact_pcm_wav_is_timed_from_its_checked_header(tmp_path: Path, corpus: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(pcm_wav(12.5))
    assert audio.wav_header_duration(path, "pcm_s16le") == 12.5
    assert audio.probe(path).duration == 12.5
    mulaw = corpus / "calls" / "call-JD002-0930.wav"
    assert audio.wav_header_duration(mulaw, "pcm_mulaw") == pytest.approx(50.727, abs=0.01)


def test_truncated_pcm_wav_falls_back_to_counting_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(pcm_wav(11.0)[:44 + 2 * 8000 * 3])  # the header still announces 11 s
    assert audio.wav_header_duration(path, "pcm_s16le") is None
    assert audio.probe(path).duration == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize(("name", "codec"), [("a.mp3", "mp3"), ("a.wav", "adpcm_ms"),
                                             ("a.webm", "pcm_s16le")])
def test_header_is_never_trusted_for_compressed_or_non_wav_audio(tmp_path: Path, name: str,
                                                                 codec: str) -> None:
    path = tmp_path / name
    path.write_bytes(pcm_wav(12.0))
    assert audio.wav_header_duration(path, codec) is None


def test_wav_header_behind_a_large_metadata_chunk_is_still_read(tmp_path: Path) -> None:
    plain = pcm_wav(12.0)
    padding = b"LIST" + (10_000).to_bytes(4, "little") + b"\0" * 10_000  # past the first read
    path = tmp_path / "tagged.wav"
    path.write_bytes(plain[:12] + padding + plain[12:])
    info = audio.pcm_wav_info(path)
    assert info is not None and info.duration == 12.0
