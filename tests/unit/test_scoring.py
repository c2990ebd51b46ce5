"""Scoring and flagging, table-driven."""

from __future__ import annotations

import random

import pytest

from ingestd.models import CheckKind, CheckResult
from pipeline import scoring
from pipeline.analyze.base import CheckOutcome, CheckSpec
from pipeline.stages import RETRY_MAX_SECONDS, retry_delay

P, F = CheckResult.PASS, CheckResult.FAIL
NA, NE = CheckResult.NOT_APPLICABLE, CheckResult.NOT_EVALUATED


def run(threshold: float, *rows: tuple[str, CheckResult, float, bool]) -> scoring.Verdict:
    specs = [CheckSpec(name=name, kind=CheckKind.PHRASE, weight=weight, critical=critical)
             for name, _, weight, critical in rows]
    outcomes = [CheckOutcome(name=name, result=result, evidence=None, reason="")
                for name, result, _, _ in rows]
    return scoring.judge(outcomes, specs, threshold)


CASES = [
    # (id, threshold, rows (name, result, weight, critical), score, flag reasons)
    ("all pass", 70, [("a", P, 1, False), ("b", P, 1, True)], 100.0, []),
    ("weights count", 70, [("a", P, 3, False), ("b", F, 1, False)], 75.0, []),
    ("below threshold", 70, [("a", P, 3, False), ("b", F, 2, False)], 60.0,
     ["score 60 below threshold 70"]),
    ("exactly at threshold is not flagged", 75, [("a", P, 3, False), ("b", F, 1, False)],
     75.0, []),
    ("critical failure flags a good score", 50,
     [("a", P, 9, False), ("recording_disclosure", F, 1, True)], 90.0,
     ["critical check failed: recording_disclosure"]),
    ("critical and threshold together", 70,
     [("a", F, 1, False), ("no_promises", F, 1, True)], 0.0,
     ["critical check failed: no_promises", "score 0 below threshold 70"]),
    ("not applicable and not evaluated are left out", 70,
     [("a", P, 1, False), ("b", NA, 5, False), ("c", NE, 5, True)], 100.0, []),
    ("nothing evaluated gives no score and no flag", 70,
     [("a", NE, 1, True), ("b", NA, 1, False)], None, []),
    ("no checks at all", 70, [], None, []),
    ("fractional score", 70, [("a", P, 2, False), ("b", F, 1, False)], 66.67,
     ["score 66.67 below threshold 70"]),
]


@pytest.mark.parametrize(("name", "threshold", "rows", "score", "reasons"), CASES,
                         ids=[case[0] for case in CASES])
def test_judge(name, threshold, rows, score, reasons) -> None:
    verdict = run(threshold, *rows)
    assert verdict.score == score
    assert list(verdict.flag_reasons) == reasons
    assert verdict.flagged is bool(reasons)


def test_retry_delay_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempt, rng) for attempt in (1, 2, 3, 4)]
    for attempt, delay in zip((1, 2, 3, 4), delays, strict=True):
        ceiling = 30 * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert retry_delay(50, rng) <= RETRY_MAX_SECONDS
