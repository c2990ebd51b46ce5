"""Analyzers: quality checks evaluated on a transcript (see ``base``)."""

from pipeline.analyze.base import Analyzer, CheckOutcome, CheckSpec, build_analyzer

__all__ = ["Analyzer", "CheckOutcome", "CheckSpec", "build_analyzer"]
