"""Cutting cleaned document text into sentence-aware passages that fit the embedding model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

Span = tuple[int, int]
CountTokens = Callable[[Sequence[str]], list[int]]

# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before
# white space and a capital, digit or opening quote; or at a line break.
_END = re.compile(r"""[.!?…]+["'”’»)\]]*(?=\s+["'“‘«(\[]?[A-Z0-9А-ЯЁ])|\n+""")
# Short words that end with a period without ending the sentence.
_ABBREV = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Gen|Col|Lt|Sgt|Capt|Rep|Sen|Gov|Pres|vs|etc|No|Fig|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Inc|Ltd|Co|Corp|approx|e\.g|i\.e)"
    r"|\b[A-Z](?:\.[A-Z])*)\.$"
)


def sentences(text: str) -> list[Span]:
    """Spans of the sentences (and lines) of a text, without surrounding white space."""
    spans: list[Span] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end() if m.group(0)[0] != "\n" else m.start()
        if m.group(0)[0] != "\n" and _ABBREV.search(text[max(start, end - 12) : end]):
            continue
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def _split_long(text: str, span: Span, count: CountTokens, limit: int) -> list[Span]:
    """Cut one over-long sentence at word boundaries into pieces of at most `limit` pieces."""
    a, b = span
    words = [(m.start() + a, m.end() + a) for m in re.finditer(r"\S+", text[a:b])]
    sizes = count([text[x:y] for x, y in words])
    pieces: list[Span] = []
    cur_start, cur_tokens, last_end = None, 0, a
    for (x, y), n in zip(words, sizes):
        if n > limit:  # one "word" longer than the limit (a URL, a hash): cut by characters
            if cur_start is not None:
                pieces.append((cur_start, last_end))
                cur_start, cur_tokens = None, 0
            step = max(1, (y - x) * limit // (n + 1))
            pieces.extend((i, min(i + step, y)) for i in range(x, y, step))
            last_end = y
            continue
        if cur_start is not None and cur_tokens + n > limit:
            pieces.append((cur_start, last_end))
            cur_start, cur_tokens = None, 0
        if cur_start is None:
            cur_start = x
        cur_tokens += n
        last_end = y
    if cur_start is not None:
        pieces.append((cur_start, last_end))
    return pieces


def chunk(
    text: str, count: CountTokens, target: int = 200, overlap: int = 32, limit: int = 254
) -> list[Span]:
    """Spans of passages of whole sentences, about `target` word pieces each, never above `limit`.

    Consecutive passages share up to `overlap` word pieces of whole sentences, so a fact that
    straddles a boundary is still found whole in one of them.
    """
    target = min(target, limit)
    units: list[Span] = []
    for span in sentences(text):
        units.append(span)
    sizes = count([text[a:b] for a, b in units])
    pieces: list[Span] = []
    piece_sizes: list[int] = []
    for span, n in zip(units, sizes):
        if n > limit:
            parts = _split_long(text, span, count, limit)
            pieces.extend(parts)
            piece_sizes.extend(count([text[a:b] for a, b in parts]))
        else:
            pieces.append(span)
            piece_sizes.append(n)

    chunks: list[Span] = []
    i = 0
    while i < len(pieces):
        j, total = i, 0
        # +1 per joint: a space or line break between pieces may become a word piece boundary.
        while j < len(pieces) and (j == i or total + piece_sizes[j] + 1 <= target):
            total += piece_sizes[j] + (1 if j > i else 0)
            j += 1
        chunks.append((pieces[i][0], pieces[j - 1][1]))
        if j >= len(pieces):
            break
        # Step back over whole trailing pieces worth at most `overlap` word pieces.
        back, k = 0, j
        while k - 1 > i and back + piece_sizes[k - 1] <= overlap:
            back += piece_sizes[k - 1]
            k -= 1
        i = k
    return chunks
