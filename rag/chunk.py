"""Cutting cleaned document text into sentence-aware passages that fit the embedding model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

Span = tuple[int, int]
CountTokens = Callable[[Sequence[str]], list[int]]

# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before
# white space and a capital, digit or opening quote; or at a line break.
_END = re.compile(r"""[.!?…]+["'”’»)\]]*(?=\s+["'“‘«(\[]?[A-Z0-9А-ЯЁ])|\n+""")
# A table row as the readers write it (rag.read.tables): "Header: value" cells joined by "; ",
# or cells joined by " | " (rows without headers, Markdown tables). It is cut only between cells.
_NAMED_CELL = re.compile(r"[^:;\n]{1,80}: ")
_CELL_JOINT = re.compile(r"; (?=[^:;\n]{1,80}: )| \| ")
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


def is_table_row(line: str) -> bool:
    """Whether a line is a table row: at least two "Header: value" cells joined by "; " (and
    as many cells with a header as without), or cells joined by " | "."""
    if " | " in line or (line.startswith("|") and line.endswith("|") and len(line) > 1):
        return True
    if "; " not in line:
        return False
    cells = line.split("; ")
    named = sum(1 for c in cells if _NAMED_CELL.match(c))
    return named >= 2 and 2 * named >= len(cells)


def units(text: str) -> list[Span]:
    """The sentences of a text, except that each table row is one unit, whatever its sentences."""
    spans = sentences(text)
    rows = [
        m.span()
        for m in re.finditer(r"[^\n]+", text)
        if ("; " in m.group() or "|" in m.group()) and is_table_row(m.group().strip())
    ]
    if not rows:
        return spans
    out: list[Span] = []
    k = 0
    for a, b in spans:
        while k < len(rows) and rows[k][1] <= a:
            k += 1
        if k < len(rows) and rows[k][0] <= a:
            row = rows[k]
            if not out or out[-1][1] <= row[0]:
                line = text[row[0] : row[1]]
                lead = len(line) - len(line.lstrip())
                out.append((row[0] + lead, row[0] + len(line.rstrip())))
            continue
        out.append((a, b))
    return out


def _split_row(text: str, span: Span, count: CountTokens, limit: int) -> list[Span]:
    """Cut one over-long table row between cells into pieces of at most `limit` word pieces;
    a cell longer than that alone is cut at word boundaries."""
    a, b = span
    cells: list[Span] = []
    start = a
    for m in _CELL_JOINT.finditer(text, a, b):
        cells.append((start, m.start()))
        start = m.end()
    cells.append((start, b))
    sizes = count([text[x:y] for x, y in cells])
    pieces: list[Span] = []
    cur: Span | None = None
    total = 0
    for (x, y), n in zip(cells, sizes):
        if cur is not None and total + n + 1 > limit:
            pieces.append(cur)
            cur = None
        if n > limit:
            pieces.extend(_split_long(text, (x, y), count, limit))
            continue
        cur, total = ((cur[0], y), total + n + 1) if cur is not None else ((x, y), n)
    if cur is not None:
        pieces.append(cur)
    return pieces


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

    A table row is kept whole like a sentence (cut between its cells only when it alone is
    longer than `limit`), so a passage holds whole rows, each with its column headers.

    Consecutive passages share up to `overlap` word pieces of whole sentences, so a fact that
    straddles a boundary is still found whole in one of them.
    """
    target = min(target, limit)
    spans = units(text)
    sizes = count([text[a:b] for a, b in spans])
    pieces: list[Span] = []
    piece_sizes: list[int] = []
    for span, n in zip(spans, sizes):
        if n > limit:
            row = is_table_row(text[span[0] : span[1]])
            parts = (_split_row if row else _split_long)(text, span, count, limit)
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
