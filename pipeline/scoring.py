"""Score and flag a call from its check outcomes. Pure: no I/O, no clock.

The score is the weighted share of passed checks among the evaluated ones (PASS or FAIL);
``NOT_APPLICABLE`` and ``NOT_EVALUATED`` checks count for nothing, and with nothing evaluated
there is no score at all (None), rather than a misleading 0 or 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ingestd.models import CheckResult
from pipeline.analyze.base import CheckOutcome, CheckSpec


@dataclass(frozen=True)
class Verdict:
    score: float | None
    flagged: bool
    flag_reasons: tuple[str, ...]


def score(outcomes: Sequence[CheckOutcome], specs: Sequence[CheckSpec]) -> float | None:
    """100 * passed weight / evaluated weight, or None when no check was evaluated."""
    weights = {spec.name: spec.weight for spec in specs}
    passed = evaluated = 0.0
    for outcome in outcomes:
        if outcome.result not in (CheckResult.PASS, CheckResult.FAIL):
            continue
        weight = weights.get(outcome.name, 1.0)
        evaluated += weight
        if outcome.result is CheckResult.PASS:
            passed += weight
    if evaluated <= 0:
        return None
    return round(100.0 * passed / evaluated, 2)


def judge(outcomes: Sequence[CheckOutcome], specs: Sequence[CheckSpec],
          flag_threshold: float) -> Verdict:
    """The score, and whether (and why) the call is flagged for review."""
    value = score(outcomes, specs)
    critical = {spec.name for spec in specs if spec.critical}
    reasons = [f"critical check failed: {outcome.name}" for outcome in outcomes
               if outcome.name in critical and outcome.result is CheckResult.FAIL]
    if value is not None and value < flag_threshold:
        reasons.append(f"score {value:g} below threshold {flag_threshold:g}")
    return Verdict(score=value, flagged=bool(reasons), flag_reasons=tuple(reasons))
