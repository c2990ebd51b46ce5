"""Pipeline test doubles: a scripted transcriber, a failing analyzer, and a CallProcessor that
uses them (the hook methods ``transcriber_for``/``analyzer_for`` are how faults are injected)."""

from __future__ import annotations

from pathlib import Path

from ingestd import errors
from ingestd.models import Speaker
from pipeline.analyze.base import CheckOutcome, CheckSpec
from pipeline.analyze.rules import RulesAnalyzer
from pipeline.stages import CallProcessor
from pipeline.transcribe.base import Transcript, Utterance


class ScriptedTranscriber:
    """Says what the test tells it to; counts its calls."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls = 0

    async def transcribe(self, audio_path: Path, agent_channel: int,
                         hints: tuple[str, ...] = ()) -> Transcript:
        self.calls += 1
        text = self.texts[min(self.calls, len(self.texts)) - 1]
        return Transcript((Utterance(Speaker.AGENT, 0, 0.5, 4.0, text),), separated=True,
                          provider="scripted")


class BrokenAnalyzer:
    async def analyze(self, transcript: Transcript,
                      checks: list[CheckSpec]) -> list[CheckOutcome]:
        raise errors.ProviderError("Claude answered HTTP 400: bad request", retryable=False)


class ScriptedProcessor(CallProcessor):
    transcriber: ScriptedTranscriber
    broken_analysis = False

    def transcriber_for(self, name: str) -> ScriptedTranscriber:
        return self.transcriber

    def analyzer_for(self, name: str) -> RulesAnalyzer | BrokenAnalyzer:
        return BrokenAnalyzer() if self.broken_analysis else RulesAnalyzer()
