"""The lexical (BM25) index over the same passages: exact words, names and numbers."""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FOLDER = "lexical"
# How words are made comparable; bumped when `tokenize` changes. An index whose lexical part
# was written with another version has it rebuilt from its passages when opened.
VERSION = 2  # 2: accents and case folded ("Bábich" and "Babich" are one word)
_VERSION_FILE = "rag_lexical.json"


@functools.cache
def _stem():  # noqa: ANN202 - PyStemmer's stemWords, loaded once
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


def fold(text: str) -> str:
    """Text with accents dropped and case folded, for matching words as people type them:
    "Bábich" -> "babich", "Straße" -> "strasse"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Folded (accents, case), stemmed words without English stop words."""
    import bm25s

    return bm25s.tokenize(
        [fold(t) for t in texts],
        stopwords="en",
        stemmer=_stem(),
        return_ids=False,
        show_progress=False,
    )


def build(texts: Sequence[str]):  # noqa: ANN201 - bm25s.BM25
    """A BM25 model over passage texts; row i is passage id i."""
    import bm25s

    model = bm25s.BM25()
    model.index(tokenize(texts), show_progress=False)
    return model


def save(model, folder: Path) -> None:  # noqa: ANN001
    """Plain .npy arrays and JSON (bm25s's own format, with pickling off)."""
    model.save(str(folder), allow_pickle=False, show_progress=False)
    (folder / _VERSION_FILE).write_text(json.dumps({"version": VERSION}), encoding="utf-8")


def saved_version(folder: Path) -> int:
    """The tokenizer version a saved lexical index was written with (1 before it was recorded)."""
    try:
        return int(json.loads((folder / _VERSION_FILE).read_text(encoding="utf-8"))["version"])
    except FileNotFoundError:
        return 1


def load(folder: Path):  # noqa: ANN201
    import bm25s

    return bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False, verbosity=0)


def search(
    model,  # noqa: ANN001 - bm25s.BM25
    query: str,
    k: int,
    size: int,
    allowed: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """(passage id, BM25 score) of the best k passages that share a word with the query; with
    `allowed` (passage ids), only those are ranked."""
    tokens = [t for t in tokenize([query])[0] if t in model.vocab_dict]
    k = min(k, size if allowed is None else len(allowed))
    if not tokens or k <= 0:
        return []
    mask = None
    if allowed is not None:  # bm25s zeroes the other passages' scores before taking the top k
        mask = np.zeros(size, dtype=np.float32)
        mask[allowed] = 1.0
    ids, scores = model.retrieve([tokens], k=k, show_progress=False, n_threads=1, weight_mask=mask)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0 and np.isfinite(s)]
