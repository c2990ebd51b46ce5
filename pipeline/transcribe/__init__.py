"""Transcribers: recordings in, speaker-labelled utterances out (see ``base``)."""

from pipeline.transcribe.base import (
    Transcriber,
    Transcript,
    Utterance,
    build_transcriber,
)

__all__ = ["Transcriber", "Transcript", "Utterance", "build_transcriber"]
