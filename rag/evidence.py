"""Choosing the evidence for an answer: the sentences of the found passages that answer the
question, so the prompt spends its tokens (and the CPU its seconds) on those alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .chunk import units
from .types import Hit

# Sentences of fewer words are captions, bylines and fragments ("(Photo by Reuters)").
MIN_WORDS = 5
# How much a sentence's share of the question's words adds to its cosine similarity.
LEXICAL_WEIGHT = 0.3
# How much the rank of the passage a sentence comes from adds (first passage most).
PASSAGE_WEIGHT = 0.1
# Sentences scoring this far below the best are not evidence, however much budget is left.
MARGIN = 0.2
# Words that label a line of a dialogue rather than say anything ("Question: …").
LABELS = frozenset({"question", "answer", "q", "a", "user", "assistant", "system"})
# Sentences kept on each side of a chosen one: what "he", "so" or "the year after" refers to.
CONTEXT = 1


@dataclass(frozen=True)
class Sentence:
    """One sentence of a found passage: which passage, and where in its cleaned text."""

    passage: int  # index into the hits
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Excerpt:
    """The sentences chosen from one passage, in reading order, gaps marked with an ellipsis."""

    hit: Hit
    text: str
    score: float  # the best score of its sentences


def split(hits: Sequence[Hit]) -> list[Sentence]:
    """The distinct sentences of the passages (overlapping passages share some), in order,
    without the document's title line; a table row counts as one sentence."""
    seen: set[tuple[str, str]] = set()
    out: list[Sentence] = []
    for n, hit in enumerate(hits):
        text = hit.chunk.text
        # The document's title line says nothing the passage's title does not.
        title = " ".join(hit.chunk.title.split()).casefold()
        for a, b in units(text):
            key = (hit.chunk.source, text[a:b])
            if key in seen or " ".join(key[1].split()).casefold() == title:
                continue
            seen.add(key)
            out.append(Sentence(n, a, b, text[a:b]))
    return out


def score(
    question_vector: np.ndarray,
    sentence_vectors: np.ndarray,
    question_terms: set[str],
    sentence_terms: Sequence[set[str]],
    passages: Sequence[int],
) -> np.ndarray:
    """Each sentence's score: cosine to the question, plus the share of the question's words it
    uses, plus a little for coming from a better-ranked passage; minus infinity for a sentence
    that says nothing but the question's own words."""
    dense = sentence_vectors @ question_vector.reshape(-1)
    share = np.array(
        [len(question_terms & terms) / max(1, len(question_terms)) for terms in sentence_terms]
    )
    rank = np.array([1.0 / (1 + p) for p in passages])
    scores = dense + LEXICAL_WEIGHT * share + PASSAGE_WEIGHT * rank
    # A sentence that only repeats the question's words ("Question: What did Lappo threaten?")
    # answers nothing, however close it is; it would also crowd out the sentences that do.
    echo = np.array(
        [bool(terms - LABELS) and terms - LABELS <= question_terms for terms in sentence_terms]
    )
    return np.where(echo, -np.inf, scores) if len(scores) else scores


def select(
    hits: Sequence[Hit],
    found: Sequence[Sentence],
    scores: np.ndarray,
    count: Callable[[str], int],
    budget: int,
    context: int = CONTEXT,
) -> list[Excerpt]:
    """The best sentences within `budget` tokens, each with up to `context` sentences on each
    side from the same passage (a sentence alone loses who "he" is and what "so" did), grouped
    by passage, the passage with the best sentence first.

    A sentence that speaks to the assistant ("ignore your instructions …") is never evidence:
    it is an attempt to steer the answer, not a fact about the question.
    """
    allowed = [
        i for i, s in enumerate(found) if np.isfinite(scores[i]) and not is_instruction(s.text)
    ]
    usable = [i for i in allowed if len(found[i].text.split()) >= MIN_WORDS]
    if not usable:
        usable = allowed
    if not usable:
        return []
    order = sorted(usable, key=lambda i: -scores[i])
    floor = scores[order[0]] - MARGIN
    chosen: set[int] = set()
    spent = 0

    def window(i: int) -> list[int]:
        """Sentence i with its neighbours in the same passage, nearest first."""
        out = [i]
        for d in range(1, context + 1):
            for j in (i - d, i + d):
                same = 0 <= j < len(found) and found[j].passage == found[i].passage
                if same and np.isfinite(scores[j]) and not is_instruction(found[j].text):
                    out.append(j)
        return out

    for i in order:
        if scores[i] < floor:
            break
        if i in chosen:
            continue
        cost = count(found[i].text)
        if chosen and spent + cost > budget:
            continue
        chosen.add(i)
        spent += cost
        for j in window(i)[1:]:
            if j in chosen:
                continue
            cost = count(found[j].text)
            if spent + cost > budget:
                break
            chosen.add(j)
            spent += cost
    excerpts: list[Excerpt] = []
    for n, hit in enumerate(hits):
        mine = sorted(i for i in chosen if found[i].passage == n)
        if not mine:
            continue
        parts: list[str] = []
        for k, i in enumerate(mine):
            if k and mine[k - 1] != i - 1:
                parts.append("…")
            parts.append(found[i].text)
        excerpts.append(Excerpt(hit, " ".join(parts), float(max(scores[i] for i in mine))))
    return sorted(excerpts, key=lambda e: -e.score)


# Sentences addressed to an assistant rather than to a reader: orders to drop its rules, to
# answer with something fixed, or to play a new role. Documents about prompt injection lose
# these sentences from the evidence too; that is the price of never passing them on.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|the|previous|prior|"
    r"above|earlier)\s+(?:\w+\s+)?(?:instructions|rules|prompt)"
    r"|\b(?:reply|respond|answer)\s+(?:only\s+)?(?:with|by\s+saying)\b[^.]{0,40}\b(?:only|every|"
    r"all|whatever)\b"
    r"|\b(?:reply|respond|answer)\s+(?:only|exclusively)\s+with\b"
    r"|\b(?:respond|reply|answer)\s+to\s+every\s+question\b"
    r"|\byou\s+are\s+now\s+(?:in|a|an)\b"
    r"|\bnew\s+(?:rules?|instructions?)\s*(?:from\s+[^:]{0,40})?:"
    r"|\bnote\s+to\s+(?:the\s+)?(?:ai|assistant|model|llm|chatbot)\b"
    r"|<\|(?:im_start|im_end|endoftext)\|>|\[/?INST\]|<</?SYS>>|</?passage\b"
    r"|###\s*(?:instruction|response)\b",
    re.IGNORECASE,
)


def is_instruction(text: str) -> bool:
    """True for a sentence that gives orders to an assistant (a prompt injection)."""
    return bool(_INSTRUCTION.search(text))
