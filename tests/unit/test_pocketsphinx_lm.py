"""The call-centre language model builder: cache keyed by hints, hint n-grams, a model
PocketSphinx loads, words without a pronunciation kept out."""

from __future__ import annotations

from pathlib import Path

import pocketsphinx
import pytest

from pipeline.transcribe import pocketsphinx_lm
from pipeline.transcribe.pocketsphinx_lm import LanguageModelCache

HINTS = ("Thank you for calling", "this call may be recorded for quality and training purposes")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LanguageModelCache, Path]:
    """One model built for HINTS, shared by the tests that only read it."""
    cache = LanguageModelCache(tmp_path_factory.mktemp("models"))
    return cache, cache.model_for(HINTS)


def _ngrams(model: Path, order: int) -> set[str]:
    text = model.read_text(encoding="utf-8")
    section = text.split(f"\\{order}-grams:")[1].split("\\")[0]
    return {" ".join(line.split()[1:order + 1]) for line in section.splitlines() if line.strip()}


def test_model_is_cached_under_the_hints_key(built: tuple[LanguageModelCache, Path]) -> None:
    cache, model = built
    assert model.parent == cache.cache_dir
    assert model.name == f"callcentre-{cache.key(HINTS)}.lm"
    before = model.stat().st_mtime_ns
    again = cache.model_for(HINTS)
    assert again == model
    assert model.stat().st_mtime_ns == before  # a cache hit does not rebuild
    assert list(cache.cache_dir.iterdir()) == [model]  # no temporary files left behind


@pytest.mark.parametrize("same", [
    tuple(reversed(HINTS)),
    ("THANK YOU FOR CALLING!", "This call may be recorded, for quality and training purposes."),
    (*HINTS, "thank you for calling"),
])
def test_key_ignores_order_case_punctuation_and_repeats(same: tuple[str, ...]) -> None:
    cache = LanguageModelCache(Path("unused"))
    assert cache.key(same) == cache.key(HINTS)


def test_other_hints_build_another_model(built: tuple[LanguageModelCache, Path]) -> None:
    cache, model = built
    other = cache.model_for(("your parcel is on its way",))
    assert other != model
    assert "your parcel is" in _ngrams(other, 3)
    assert "your parcel is" not in _ngrams(model, 3)
    assert cache.key(()) != cache.key(HINTS)


def test_model_contains_the_hint_ngrams(built: tuple[LanguageModelCache, Path]) -> None:
    _, model = built
    trigrams = _ngrams(model, 3)
    for phrase in ("thank you for calling",
                   "this call may be recorded for quality and training purposes"):
        words = phrase.split()
        for index in range(len(words) - 2):
            assert " ".join(words[index:index + 3]) in trigrams
    assert {"<s>", "</s>"} <= _ngrams(model, 1)


def test_pocketsphinx_loads_the_model(built: tuple[LanguageModelCache, Path]) -> None:
    _, model = built
    loaded = pocketsphinx.NGramModel.readfile(str(model))
    unseen = loaded.prob(["zebra"])
    assert loaded.prob(["calling"]) > unseen
    assert loaded.prob(["for", "you", "thank"]) > loaded.prob(["for", "you", "zebra"])
    decoder = pocketsphinx.Decoder(lm=str(model), loglevel="FATAL")
    assert decoder.lookup_word("recorded")


def test_words_without_pronunciation_split_the_sentence() -> None:
    known = frozenset({"please", "confirm", "your", "name"})
    runs = pocketsphinx_lm.in_vocabulary_runs(
        pocketsphinx_lm.normalise("Please confirm your Qwxzt name"), known)
    assert runs == [["please", "confirm", "your"], ["name"]]
    assert pocketsphinx_lm.in_vocabulary_runs(["qwxzt"], known) == []


def test_unknown_hint_words_never_reach_the_model(tmp_path: Path) -> None:
    model = LanguageModelCache(tmp_path).model_for(("zebra crossing qwxzt apple orchard",))
    assert "qwxzt" not in _ngrams(model, 1)
    bigrams = _ngrams(model, 2)
    assert {"zebra crossing", "apple orchard"} <= bigrams
    assert "crossing apple" not in bigrams  # the unknown word splits the phrase, not glues it


def test_normalise_keeps_inword_apostrophes() -> None:
    assert pocketsphinx_lm.normalise("That's it, 'Mr' O\u2019Brien!") == ["that's", "it", "mr",
                                                                           "o'brien"]
