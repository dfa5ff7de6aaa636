"""Finding the passages that best match a question: dense, lexical (BM25) or both fused."""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from . import filters, lexical
from .embed import Embedder
from .errors import IndexCorrupt, RagError
from .filters import Where
from .store import Index
from .types import Hit

MODES = ("dense", "lexical", "hybrid")
RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al. 2009)


def _bm25(index: Index):  # noqa: ANN202
    model = index.cache.get("bm25")
    if model is None:
        folder = index.folder / lexical.FOLDER
        try:
            if folder.is_dir() and lexical.saved_version(folder) != lexical.VERSION:
                # Written by an older tokenizer: its words would not match the question's.
                # Rebuilt from the stored passages in memory; the next `rag index` saves it.
                texts = [c.text for c in index.all_chunks()]
                model = index.cache["bm25"] = lexical.build(texts)
                return model
            model = index.cache["bm25"] = lexical.load(folder)
        except Exception as exc:  # missing or damaged arrays
            raise IndexCorrupt(
                f"the lexical index {folder} is unreadable ({exc}): "
                f"run `rag index --full --index-dir {index.root}`"
            ) from exc
    return model


def vocabulary(index: Index) -> Container[str]:
    """Every stemmed word the lexical index knows: what the documents ever say."""
    return _bm25(index).vocab_dict


def fuse(rankings: list[list[int]], k: int) -> list[int]:
    """Reciprocal rank fusion: ids ordered by the sum of 1/(RRF_K + rank) over the rankings."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores, key=lambda i: -scores[i])[:k]


def search(
    index: Index,
    embedder: Embedder,
    query: str,
    k: int,
    mode: str = "hybrid",
    where: Where | None = None,
) -> list[Hit]:
    """The k best passages for a query, among the documents `where` allows (all by default).
    Each hit's score is its cosine similarity to the query, whatever the mode, so one refusal
    threshold serves all modes."""
    if mode not in MODES:
        raise RagError(f"unknown retrieval mode {mode!r}: use one of {', '.join(MODES)}")
    allowed = filters.passage_ids(where, index.manifest) if where else None
    vector = embedder.encode_query(query)
    pool = max(k * 4, 20)
    if mode == "dense":
        ids = [i for i, _ in index.search(vector, k, allowed)]
    elif mode == "lexical":
        ids = [i for i, _ in lexical.search(_bm25(index), query, k, index.size, allowed)]
    else:
        dense = [i for i, _ in index.search(vector, pool, allowed)]
        words = [i for i, _ in lexical.search(_bm25(index), query, pool, index.size, allowed)]
        ids = fuse([dense, words], k)
    chunks = index.chunks(ids)
    if not chunks:
        return []
    cosine = index.reconstruct([c.id for c in chunks]) @ vector[0]
    return [Hit(c, float(s)) for c, s in zip(chunks, np.asarray(cosine))]
