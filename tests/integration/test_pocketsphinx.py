"""PocketSphinx on real corpus calls: utterance timing and speakers against the truth files,
and the rules analyzer on perfect transcripts built from the truth."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ingestd.models import CheckKind, CheckResult, Speaker
from pipeline.analyze.base import CheckSpec
from pipeline.analyze.rules import RulesAnalyzer
from pipeline.transcribe.base import Transcript, Utterance, build_transcriber
from pipeline.transcribe.pocketsphinx import PocketsphinxTranscriber

# Truth boundaries are exact; PocketSphinx's voice activity lands within ~0.07 s on the corpus.
BOUNDARY_TOLERANCE = 0.3

# The checks of the corpus README, which the scripts are written against.
README_CHECKS = [
    CheckSpec(name="greeting", kind=CheckKind.PHRASE, phrases=("thank you for calling",),
              speaker="agent", within_seconds=15),
    CheckSpec(name="recording_disclosure", kind=CheckKind.PHRASE,
              phrases=("this call may be recorded for quality and training purposes",),
              speaker="agent", within_seconds=30, critical=True),
    CheckSpec(name="identity_verification", kind=CheckKind.PHRASE,
              phrases=("verify your identity", "confirm your full name",
                       "confirm your date of birth"), speaker="agent"),
    CheckSpec(name="closing_offer", kind=CheckKind.PHRASE,
              phrases=("is there anything else I can help you with",), speaker="agent"),
    CheckSpec(name="no_promises", kind=CheckKind.FORBIDDEN_PHRASE,
              phrases=("I guarantee", "you will definitely make money"), critical=True),
]

_transcripts: dict[Path, Transcript] = {}


def transcribe(path: Path, agent_channel: int = 0) -> Transcript:
    """Each corpus file is transcribed once per test session (it takes seconds)."""
    key = path.with_suffix(path.suffix + f".{agent_channel}")
    if key not in _transcripts:
        transcriber = PocketsphinxTranscriber()
        _transcripts[key] = asyncio.run(transcriber.transcribe(path, agent_channel))
    return _transcripts[key]


def truth_of(audio: Path) -> dict:
    return json.loads(audio.with_name(audio.stem + ".truth.json").read_text())


@pytest.mark.parametrize("name", ["JD002 callback 1415.webm", "20260115_JS001_outbound.mp3"])
def test_stereo_utterances_match_truth(corpus: Path, name: str) -> None:
    audio = corpus / "calls" / name
    transcript = transcribe(audio)
    assert transcript.separated is True
    assert transcript.provider == "pocketsphinx"
    starts = [u.start for u in transcript.utterances]
    assert starts == sorted(starts)
    for utterance in transcript.utterances:
        assert utterance.text.strip()
        assert (utterance.speaker, utterance.channel) in {(Speaker.AGENT, 0),
                                                          (Speaker.CUSTOMER, 1)}
    for expected in truth_of(audio)["utterances"]:
        match = _overlapping(transcript, expected)
        assert len(match) == 1, f"{expected['text']!r} matched {match}"
        assert abs(match[0].start - expected["start"]) <= BOUNDARY_TOLERANCE
        assert abs(match[0].end - expected["end"]) <= BOUNDARY_TOLERANCE


def test_agent_channel_swaps_speakers(corpus: Path) -> None:
    audio = corpus / "calls" / "JD002 callback 1415.webm"
    swapped = transcribe(audio, agent_channel=1)
    normal = transcribe(audio)
    assert [(u.channel, u.start) for u in swapped.utterances] == [
        (u.channel, u.start) for u in normal.utterances]
    for utterance in swapped.utterances:
        assert utterance.speaker == (Speaker.AGENT if utterance.channel == 1
                                     else Speaker.CUSTOMER)


def test_mono_is_unseparated_with_truth_timing(corpus: Path) -> None:
    audio = corpus / "calls" / "20260120_KL003_outbound.mp3"
    transcript = transcribe(audio)
    assert transcript.separated is False
    assert {u.speaker for u in transcript.utterances} == {Speaker.UNKNOWN}
    truth = truth_of(audio)["utterances"]
    assert len(transcript.utterances) == len(truth)
    for got, expected in zip(transcript.utterances, truth, strict=True):
        assert abs(got.start - expected["start"]) <= BOUNDARY_TOLERANCE
        assert abs(got.end - expected["end"]) <= BOUNDARY_TOLERANCE


def test_silence_gives_no_utterances(corpus: Path) -> None:
    transcript = transcribe(corpus / "bad" / "bad_silent_30s.wav")
    assert transcript.utterances == ()


def test_pocketsphinx_is_built_and_unknown_names_are_refused(settings) -> None:
    from ingestd.errors import ProviderError

    assert isinstance(build_transcriber("pocketsphinx", settings), PocketsphinxTranscriber)
    with pytest.raises(ProviderError) as caught:
        build_transcriber("whisper", settings)
    assert str(caught.value) == "transcriber 'whisper' is not available in this build"
    assert caught.value.retryable is False


def _all_calls() -> list[str]:
    from conftest import CORPUS

    return sorted(p.name for p in (CORPUS / "calls").glob("*") if p.suffix != ".json")


@pytest.mark.parametrize("name", _all_calls())
def test_rules_on_perfect_transcript_agree_with_truth(corpus: Path, name: str) -> None:
    truth = truth_of(corpus / "calls" / name)
    transcript = _perfect_transcript(truth)
    outcomes = {o.name: o for o in asyncio.run(RulesAnalyzer().analyze(transcript,
                                                                       README_CHECKS))}
    for check, expected in truth["quality"]["required_checks"].items():
        assert outcomes[check].result is (CheckResult.PASS if expected["present"]
                                          else CheckResult.FAIL), check
        if expected["present"]:
            first = truth["utterances"][expected["first"]["utterance"]]
            assert outcomes[check].evidence == first["text"]
    said = truth["quality"]["forbidden_said"]
    assert outcomes["no_promises"].result is (CheckResult.FAIL if said else CheckResult.PASS)
    compliant = all(o.result is CheckResult.PASS for o in outcomes.values())
    assert compliant is truth["quality"]["compliant"]


def _perfect_transcript(truth: dict) -> Transcript:
    channels = {"left": 0, "right": 1, "mono": None}
    utterances = tuple(
        Utterance(speaker=Speaker(u["speaker"]), channel=channels[u["channel"]],
                  start=u["start"], end=u["end"], text=u["text"])
        for u in truth["utterances"])
    return Transcript(utterances=utterances, separated=True, provider="truth")


def _overlapping(transcript: Transcript, expected: dict) -> list[Utterance]:
    return [u for u in transcript.utterances
            if u.speaker == expected["speaker"] and u.start < expected["end"]
            and u.end > expected["start"]]
