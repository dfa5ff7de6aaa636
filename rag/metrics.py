"""Evaluation scores: retrieval ranks, SQuAD answer matching, keyword groups and summaries."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

# Retrieval. `ranked` holds the doc id of each retrieved chunk in rank order; several chunks of
# one document count once, at the rank of the first. `relevant` maps doc id -> grade; grades
# of 0 or below are "not relevant", as in BEIR qrels.


def _top(ranked: Sequence[str], k: int) -> list[str]:
    """The first k distinct doc ids of a ranking."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    seen: set[str] = set()
    top: list[str] = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            top.append(doc)
            if len(top) == k:
                break
    return top


def _grades(relevant: Mapping[str, float]) -> dict[str, float]:
    return {doc: grade for doc, grade in relevant.items() if grade > 0}


def hit_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    """1.0 when a relevant document is among the first k distinct documents, else 0.0."""
    grades = _grades(relevant)
    return 1.0 if any(doc in grades for doc in _top(ranked, k)) else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """1/rank of the first relevant document within the top k (a query's share of MRR@k)."""
    grades = _grades(relevant)
    for rank, doc in enumerate(_top(ranked, k), start=1):
        if doc in grades:
            return 1.0 / rank
    return 0.0


def _dcg(grades: Iterable[float]) -> float:
    return sum((2.0**grade - 1.0) / math.log2(i + 2) for i, grade in enumerate(grades))


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """Graded nDCG@k with gain 2^grade - 1; 0.0 when nothing is relevant."""
    grades = _grades(relevant)
    ideal = _dcg(sorted(grades.values(), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return _dcg(grades.get(doc, 0.0) for doc in _top(ranked, k)) / ideal


def recall_at(ranked: Sequence[str], relevant: Mapping[str, float], k: int) -> float:
    """Share of the relevant documents found in the top k; 0.0 when nothing is relevant."""
    grades = _grades(relevant)
    if not grades:
        return 0.0
    return sum(1 for doc in _top(ranked, k) if doc in grades) / len(grades)


# Answers, with the semantics of the official SQuAD v1.1 evaluation script.

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, gold: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer; 0.0 with no golds."""
    target = normalize_answer(prediction)
    return max((float(target == normalize_answer(gold)) for gold in golds), default=0.0)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token F1 of the prediction against the gold answers; 0.0 with no golds."""
    return max((_f1(prediction, gold) for gold in golds), default=0.0)


def keyword_groups_ok(answer: str, must: Sequence[Sequence[str]]) -> bool:
    """True when every group has an alternative inside the answer, ignoring case."""
    text = answer.casefold()
    return all(any(alt.casefold() in text for alt in group) for group in must)


def citation_precision(cited_docs: Sequence[str], gold_docs: set[str]) -> float | None:
    """Share of citations (one entry each) that point into a gold document; None if none."""
    if not cited_docs:
        return None
    return sum(1 for doc in cited_docs if doc in gold_docs) / len(cited_docs)


# Summaries. None entries (e.g. citation precision of an answer citing nothing) are skipped,
# and a summary of nothing is None rather than a made-up 0.


def mean(xs: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [x for x in xs if x is not None]
    return sum(values) / len(values) if values else None


def percentile(xs: Iterable[float | None], p: float) -> float | None:
    """The p-th percentile (0-100) with linear interpolation, as numpy's default; None if empty."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    values = sorted(x for x in xs if x is not None)
    if not values:
        return None
    position = (len(values) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
