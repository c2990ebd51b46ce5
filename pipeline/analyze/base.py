"""The analysis seam: an ``Analyzer`` evaluates a campaign's quality checks on a transcript.

``CheckSpec`` is the pipeline's frozen copy of a ``QualityCheck`` row, so analyzers never touch
the database; ``CheckOutcome`` is one check's result with the quoted evidence and a reason an
operator can read. Analyzers are picked by name with :func:`build_analyzer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ingestd import errors
from ingestd.config import Settings
from ingestd.models import CheckKind, CheckResult, QualityCheck
from pipeline import provider
from pipeline.transcribe.base import Transcript


@dataclass(frozen=True)
class CheckSpec:
    """One quality check as the analyzer sees it."""

    name: str
    kind: CheckKind
    phrases: tuple[str, ...] = ()
    pattern: str | None = None
    question: str | None = None
    speaker: str | None = None
    within_seconds: float | None = None
    weight: float = 1.0
    critical: bool = False

    @classmethod
    def from_row(cls, row: QualityCheck) -> CheckSpec:
        return cls(name=row.name, kind=CheckKind(row.kind), phrases=tuple(row.phrases or ()),
                   pattern=row.pattern, question=row.question, speaker=row.speaker,
                   within_seconds=row.within_seconds, weight=row.weight, critical=row.critical)


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check; ``evidence`` quotes the transcript where it can."""

    name: str
    result: CheckResult
    evidence: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result.value, "evidence": self.evidence,
                "reason": self.reason}


class Analyzer(Protocol):
    async def analyze(self, transcript: Transcript,
                      checks: list[CheckSpec]) -> list[CheckOutcome]:
        """One outcome per check, in the order given. Raises ProviderError on failure."""
        ...


def build_analyzer(name: str, settings: Settings) -> Analyzer:
    """The analyzer called ``name``; ProviderError (not retryable) when this build lacks it or
    its API key is not set."""
    if name == "rules":
        from pipeline.analyze.rules import RulesAnalyzer

        return RulesAnalyzer()
    if name == "anthropic":
        from pipeline.analyze.anthropic import AnthropicAnalyzer

        return AnthropicAnalyzer(provider.api_key("ANTHROPIC_API_KEY"), settings.anthropic)
    raise errors.ProviderError(f"analyzer {name!r} is not available in this build",
                               retryable=False)
