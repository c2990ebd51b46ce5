"""Word error rate and real-time factor of the offline transcriber on the corpus calls.

    python bench/wer.py [--corpus DIR] [--models stock,adapted] [--model-dir DIR]

For every call in ``<corpus>/calls`` the reference is the call's ``.truth.json`` utterances joined
in order of start time, the hypothesis the transcript's utterances joined the same way (speakers
are not compared here: the timing tests check them). Both are normalised the same way: lowercase,
every character but letters, digits and in-word apostrophes turned into a space. WER is the
word-level Levenshtein distance (substitutions + deletions + insertions) over the reference length;
the overall figure pools the errors and words of all calls (not a mean of the per-call rates).
The real-time factor is decode wall time over audio duration, one thread.

``stock`` is PocketSphinx's own language model; ``adapted`` the call-centre model of
``pipeline/transcribe/pocketsphinx_lm.py`` built with the campaign's check phrases as hints: the
phrases of the corpus README (a campaign's configuration), never the recordings' scripts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"

# The check phrases of the corpus README: what a campaign set up as documented there listens for.
README_HINTS = (
    "thank you for calling",
    "this call may be recorded for quality and training purposes",
    "verify your identity", "confirm your full name", "confirm your date of birth",
    "is there anything else I can help you with",
    "I guarantee", "you will definitely make money",
)


def normalise(text: str) -> list[str]:
    """Lowercase words with punctuation stripped (apostrophes inside a word kept)."""
    words = re.sub(r"[^a-z0-9']+", " ", text.lower().replace("\u2019", "'")).split()
    return [w.strip("'") for w in words if w.strip("'")]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against a non-empty ``reference`` (normalised first)."""
    ref = normalise(reference)
    return word_errors(ref, normalise(hypothesis)) / len(ref)


def truth_text(audio: Path) -> tuple[str, float]:
    """The reference text of a corpus call and its duration, from its truth file."""
    truth = json.loads(audio.with_name(audio.stem + ".truth.json").read_text(encoding="utf-8"))
    utterances = sorted(truth["utterances"], key=lambda u: u["start"])
    return " ".join(u["text"] for u in utterances), float(truth["duration"])


@dataclass
class Score:
    errors: int = 0
    words: int = 0
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def wer(self) -> float:
        return self.errors / max(self.words, 1)

    @property
    def rtf(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)


def measure(transcriber, audio: Path, hints: tuple[str, ...], score: Score) -> float:
    """Transcribe one call, add it to ``score`` and return its WER."""
    reference, duration = truth_text(audio)
    started = time.perf_counter()
    transcript = transcriber.transcribe_blocking(audio, 0, hints=hints)
    score.decode_seconds += time.perf_counter() - started
    hypothesis = " ".join(u.text for u in transcript.utterances)
    ref_words = normalise(reference)
    errors = word_errors(ref_words, normalise(hypothesis))
    score.errors += errors
    score.words += len(ref_words)
    score.audio_seconds += duration
    return errors / len(ref_words)


def main(argv: list[str] | None = None) -> int:
    """Print the per-call and overall WER and RTF of each model; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--models", default="stock,adapted")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="where adapted language models are cached (default: temp dir)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline.transcribe.pocketsphinx import PocketsphinxTranscriber

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not set(names) <= {"stock", "adapted"}:
        parser.error("--models takes stock and/or adapted")
    calls = sorted(p for p in (args.corpus / "calls").iterdir() if p.suffix != ".json")
    transcribers = {n: PocketsphinxTranscriber(args.model_dir, adapted=(n == "adapted"))
                    for n in names}
    for transcriber in transcribers.values():
        transcriber.language_model(README_HINTS)  # build (or find) it before the clock starts
    scores = {n: Score() for n in names}
    print(f"{'call':34} {'words':>5} " + " ".join(f"{n + ' WER':>12}" for n in names))
    for audio in calls:
        rates = [measure(transcribers[n], audio, README_HINTS, scores[n]) for n in names]
        words = len(normalise(truth_text(audio)[0]))
        print(f"{audio.name:34} {words:5d} " + " ".join(f"{r:12.1%}" for r in rates),
              flush=True)
    print(f"{'overall':34} {scores[names[0]].words:5d} "
          + " ".join(f"{scores[n].wer:12.1%}" for n in names))
    print(f"{'real-time factor':34} {'':5} " + " ".join(f"{scores[n].rtf:12.3f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
