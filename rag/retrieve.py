"""Finding the passages that best match a question: dense, lexical (BM25) or both fused."""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from . import filters
from .embed import Embedder
from .errors import RagError
from .filters import Where
from .store import Index
from .types import Hit

MODES = ("dense", "lexical", "hybrid")
RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al. 2009)


def vocabulary(index: Index) -> Container[str]:
    """Every stemmed word the lexical index knows: what the documents ever say."""
    return index.vocabulary()


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
        ids = [i for i, _ in index.words(query, k, allowed)]
    else:
        dense = [i for i, _ in index.search(vector, pool, allowed)]
        words = [i for i, _ in index.words(query, pool, allowed)]
        ids = fuse([dense, words], k)
    chunks = index.chunks(ids)
    if not chunks:
        return []
    cosine = index.reconstruct([c.id for c in chunks]) @ vector[0]
    return [Hit(c, float(s)) for c, s in zip(chunks, np.asarray(cosine))]
