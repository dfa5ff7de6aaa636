"""Finding the passages that best match a question in an open index."""

from __future__ import annotations

from .embed import Embedder
from .store import Index
from .types import Hit


def dense(index: Index, embedder: Embedder, query: str, k: int) -> list[Hit]:
    """The k passages whose vectors are nearest the question's (cosine similarity)."""
    found = index.search(embedder.encode_query(query), k)
    chunks = index.chunks([i for i, _ in found])
    scores = dict(found)
    return [Hit(c, scores[c.id]) for c in chunks]
