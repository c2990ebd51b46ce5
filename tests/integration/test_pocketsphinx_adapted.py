"""The adapted language model on a real corpus call: fewer word errors than the stock model,
the campaign's check phrase heard, speakers and utterance timings unchanged."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ingestd.models import Speaker
from pipeline.transcribe.base import Transcript
from pipeline.transcribe.pocketsphinx import PocketsphinxTranscriber

ROOT = Path(__file__).resolve().parents[2]
CALL = "20260115_JS001_outbound.mp3"
DISCLOSURE = "this call may be recorded for quality and training purposes"
# The corpus README's check phrases: the campaign's configuration, not the recordings' scripts.
HINTS = ("thank you for calling", DISCLOSURE, "verify your identity", "confirm your full name",
         "confirm your date of birth", "is there anything else I can help you with",
         "I guarantee", "you will definitely make money")
# Measured on this call: stock 80 %, adapted 51 %. Half that gap is a margin no small change in
# ffmpeg or PocketSphinx versions erases, while a model that ignored the hints and the corpus
# text would not clear it.
MARGIN = 0.15
BOUNDARY_TOLERANCE = 0.3


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_wer", ROOT / "bench" / "wer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


wer = _load_bench()


@pytest.fixture(scope="module")
def audio() -> Path:
    from conftest import CORPUS

    path = CORPUS / "calls" / CALL
    if not path.exists():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lm")


@pytest.fixture(scope="module")
def adapted(audio: Path, model_dir: Path) -> Transcript:
    transcriber = PocketsphinxTranscriber(model_dir)
    return asyncio.run(transcriber.transcribe(audio, 0, HINTS))


@pytest.fixture(scope="module")
def stock(audio: Path, model_dir: Path) -> Transcript:
    return PocketsphinxTranscriber(model_dir, adapted=False).transcribe_blocking(audio, 0)


def _error_rate(audio: Path, transcript: Transcript) -> float:
    reference, _ = wer.truth_text(audio)
    return wer.word_error_rate(reference, " ".join(u.text for u in transcript.utterances))


def test_adapted_model_makes_fewer_word_errors(audio: Path, adapted: Transcript,
                                               stock: Transcript) -> None:
    adapted_wer, stock_wer = _error_rate(audio, adapted), _error_rate(audio, stock)
    assert adapted_wer <= stock_wer - MARGIN, (adapted_wer, stock_wer)


def test_the_model_is_built_for_the_hints_and_cached(model_dir: Path,
                                                     adapted: Transcript) -> None:
    transcriber = PocketsphinxTranscriber(model_dir)
    assert transcriber.language_model(HINTS) == transcriber.models.path_for(HINTS)
    assert [p.name for p in model_dir.iterdir()] == [transcriber.models.path_for(HINTS).name]
    assert PocketsphinxTranscriber(model_dir, adapted=False).language_model(HINTS) is None


def test_hinted_check_phrase_is_heard_from_the_agent(adapted: Transcript) -> None:
    agent_text = [" ".join(wer.normalise(u.text)) for u in adapted.utterances
                  if u.speaker == Speaker.AGENT]
    assert any(DISCLOSURE in text for text in agent_text), agent_text


def test_speakers_and_timings_match_truth(audio: Path, adapted: Transcript) -> None:
    truth = json.loads(audio.with_name(audio.stem + ".truth.json").read_text())["utterances"]
    assert adapted.separated is True
    assert len(adapted.utterances) == len(truth)
    for expected in truth:
        match = [u for u in adapted.utterances if u.speaker == expected["speaker"]
                 and u.start < expected["end"] and u.end > expected["start"]]
        assert len(match) == 1, expected["text"]
        assert match[0].channel == (0 if expected["speaker"] == "agent" else 1)
        assert abs(match[0].start - expected["start"]) <= BOUNDARY_TOLERANCE
        assert abs(match[0].end - expected["end"]) <= BOUNDARY_TOLERANCE


def test_wer_counts_substitutions_deletions_and_insertions() -> None:
    assert wer.word_error_rate("Thank you, Helen.", "thank you helen") == 0
    assert wer.word_error_rate("a b c d", "a x c") == 0.5  # one substitution, one deletion
    assert wer.word_error_rate("a b", "a b c d") == 1.0  # two insertions
