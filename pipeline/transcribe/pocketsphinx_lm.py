"""The call-centre language model for the offline transcriber, built per campaign and cached.

PocketSphinx's stock model is trained on general English and hears these calls badly (about 80 %
word error rate on the corpus). A small trigram model of what is said on support calls does much
better: ``callcentre_corpus.txt`` (generic greetings, verification, billing, complaints, closings,
numbers, dates, names, written for ingestd; never the test recordings' scripts) mixed with the
campaign's check phrases (``hints``), each repeated ``HINT_REPEATS`` times so the phrases the
analyzer listens for are likely word sequences. ``pocketsphinx.lm.ArpaBoLM`` writes the ARPA file.

The vocabulary is closed to words the pronouncing dictionary knows: a word without a pronunciation
could never be recognised, and PocketSphinx would drop it from the model and leave a broken
n-gram. Such words split their sentence into the runs around them (and are logged once).

Models are cached as ``<cache_dir>/callcentre-<key>.lm``; the key hashes the normalised, sorted
hints, the corpus text and the builder settings, so a campaign whose checks change gets a new model
and one whose checks do not reuses its file. Files are written to a temporary name and renamed, so
concurrent workers never read half a model.

Tried and dropped: adding the stock model's 5,000 or 20,000 most likely words as a background
unigram mass (3 to 30 %) to open the vocabulary did not lower the corpus error rate.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pocketsphinx
from pocketsphinx import lm as arpa

log = logging.getLogger(__name__)

CORPUS_PATH = Path(__file__).with_name("callcentre_corpus.txt")
DICTIONARY_PATH = Path(pocketsphinx.get_model_path("en-us")) / "cmudict-en-us.dict"
# Weight of each check phrase against the generic text. Measured overall WER on the corpus:
# 1 copy 65.5 %, 5 copies 63.9 %, 15 copies 63.6 %; more pushes utterances towards the phrases.
HINT_REPEATS = 5
DISCOUNT_MASS = 0.5
# Bump when the way a model is built changes, so cached files from an older build are not reused.
BUILDER_VERSION = 1


def default_cache_dir() -> Path:
    """Where models go when the caller names no directory (per-user temp directory)."""
    return Path(tempfile.gettempdir()) / "ingestd-pocketsphinx-lm"


class LanguageModelCache:
    """Builds the adapted model for a set of hints once and hands back its path afterwards."""

    def __init__(self, cache_dir: Path | None = None,
                 dictionary: Path = DICTIONARY_PATH) -> None:
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.dictionary = dictionary

    def key(self, hints: Iterable[str]) -> str:
        """The cache key for ``hints``: order, case and punctuation do not matter."""
        digest = hashlib.sha256(f"v{BUILDER_VERSION} r{HINT_REPEATS} d{DISCOUNT_MASS}\n".encode())
        digest.update(CORPUS_PATH.read_bytes())
        for phrase in sorted({" ".join(normalise(h)) for h in hints} - {""}):
            digest.update(b"\x00" + phrase.encode())
        return digest.hexdigest()[:20]

    def path_for(self, hints: Iterable[str]) -> Path:
        """Where the model for ``hints`` lives (it may not be built yet)."""
        return self.cache_dir / f"callcentre-{self.key(hints)}.lm"

    def model_for(self, hints: tuple[str, ...]) -> Path:
        """The ARPA model for ``hints``, built and cached on first use."""
        path = self.path_for(hints)
        if path.exists():
            return path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        text = build_arpa(training_sentences(hints, vocabulary(self.dictionary)))
        handle, temporary = tempfile.mkstemp(dir=self.cache_dir, suffix=".lm.tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
        log.info("language_model_built path=%s hints=%d", path, len(hints))
        return path


def training_sentences(hints: Iterable[str], known: frozenset[str]) -> list[list[str]]:
    """The corpus sentences plus ``HINT_REPEATS`` copies of each hint, as in-vocabulary runs."""
    lines = [line for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    lines += [hint for hint in hints for _ in range(HINT_REPEATS)]
    sentences: list[list[str]] = []
    unknown: set[str] = set()
    for line in lines:
        runs = in_vocabulary_runs(normalise(line), known)
        unknown.update(w for w in normalise(line) if w not in known)
        sentences.extend(runs)
    if unknown:
        log.warning("language_model_words_skipped words=%s reason=no_pronunciation",
                    ",".join(sorted(unknown)))
    return sentences


def normalise(text: str) -> list[str]:
    """Lowercase words without punctuation (apostrophes inside words kept: "i'm", "o'clock")."""
    text = text.lower().replace("\u2019", "'")
    return [word.strip("'") for word in re.sub(r"[^a-z0-9']+", " ", text).split()
            if word.strip("'")]


def in_vocabulary_runs(words: list[str], known: frozenset[str]) -> list[list[str]]:
    """Split ``words`` at words missing from ``known``; the runs around them, none empty."""
    runs: list[list[str]] = [[]]
    for word in words:
        if word in known:
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def build_arpa(sentences: list[list[str]]) -> str:
    """An ARPA trigram model (fixed-discount back-off) of ``sentences``."""
    if not sentences:
        raise ValueError("no training sentences for the language model")
    text = "\n".join(" ".join(words) for words in sentences)
    model = arpa.ArpaBoLM(text=text, add_start=True, discount_mass=DISCOUNT_MASS)
    model.compute()
    out = io.StringIO()
    model.write(out)
    return out.getvalue()


@functools.lru_cache(maxsize=4)
def vocabulary(dictionary: Path) -> frozenset[str]:
    """Words that have a pronunciation in ``dictionary`` (alternates like ``word(2)`` folded)."""
    with dictionary.open(encoding="utf-8") as lines:
        return frozenset(line.split(maxsplit=1)[0].split("(")[0] for line in lines if line.strip())
