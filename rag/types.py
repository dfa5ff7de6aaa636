"""Typed, frozen data passed between the stages: documents, chunks, hits, citations, answers."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import overload


class Offsets(Sequence[int]):
    """A map from cleaned characters to original ones: offsets[i] = index in the original text
    of cleaned character i.

    Stored as runs of consecutive positions (where each run starts in the cleaned text and in
    the original), two int64 arrays: a cleaned text keeps whole lines of the original, so a
    50 MB file needs a few runs per paragraph instead of one Python int per character (which
    took 2.5 GB). Filled once by `rag.clean.clean` through `append`, `extend` and `pop`.
    """

    __slots__ = ("_at", "_to", "_len")

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._at = array("q")  # cleaned index where each run starts
        self._to = array("q")  # original index of that run's first character
        self._len = 0
        self.extend(values)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Offsets: ...
    def __getitem__(self, i: int | slice) -> int | Offsets:
        if isinstance(i, slice):
            start, stop, step = i.indices(self._len)
            if step != 1:
                return Offsets(self[j] for j in range(start, stop, step))
            out = Offsets()
            for at, to, size in self._runs(start):
                a, b = max(at, start), min(at + size, stop)
                if a >= b:
                    break
                out.extend(range(to + a - at, to + b - at))
            return out
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("offset index out of range")
        run = bisect_right(self._at, i) - 1
        return self._to[run] + i - self._at[run]

    def __iter__(self) -> Iterator[int]:
        for _, to, size in self._runs():
            yield from range(to, to + size)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Offsets):
            return (self._len, self._at, self._to) == (other._len, other._at, other._to)
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == self._len and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # equal to an equal tuple's hash, as == promises

    def __repr__(self) -> str:
        return f"Offsets(len={self._len}, runs={len(self._at)})"

    def __reduce__(self) -> tuple:
        return (_offsets_from_runs, (self._len, bytes(self._at), bytes(self._to)))

    @property
    def last(self) -> int | None:
        return self._to[-1] + self._len - 1 - self._at[-1] if self._len else None

    def append(self, value: int) -> None:
        if not self._len or value != self.last + 1:
            self._at.append(self._len)
            self._to.append(value)
        self._len += 1

    def extend(self, values: Iterable[int]) -> None:
        if isinstance(values, range) and values.step == 1:
            if values:
                if not self._len or values.start != self.last + 1:
                    self._at.append(self._len)
                    self._to.append(values.start)
                self._len += len(values)
            return
        if isinstance(values, Offsets):
            for _, to, size in values._runs():
                self.extend(range(to, to + size))
            return
        for value in values:
            self.append(value)

    def pop(self) -> int:
        value = self[-1]
        self._len -= 1
        if self._at[-1] == self._len:  # the last run is now empty
            self._at.pop()
            self._to.pop()
        return value

    def _runs(self, start: int = 0) -> Iterator[tuple[int, int, int]]:
        """(cleaned start, original start, length) of each run, from the one holding `start`."""
        first = max(bisect_right(self._at, start) - 1, 0)
        for run in range(first, len(self._at)):
            end = self._at[run + 1] if run + 1 < len(self._at) else self._len
            yield self._at[run], self._to[run], end - self._at[run]


def _offsets_from_runs(size: int, at: bytes, to: bytes) -> Offsets:
    offsets = Offsets()
    offsets._len = size
    offsets._at.frombytes(at)
    offsets._to.frombytes(to)
    return offsets


@dataclass(frozen=True)
class Document:
    """One readable file: its original text, its cleaned text and the map between them."""

    source: str  # path relative to the corpus root, with forward slashes
    path: str  # absolute path on disk
    title: str
    original: str  # the text as written (after decoding)
    text: str  # the cleaned text that is chunked and embedded
    offsets: Sequence[int]  # [i] = index in `original` of cleaned char i; len(text)+1 entries
    pages: tuple[int, ...] = ()  # for PDFs: original-text offset where page i+1 starts
    sha256: str = ""

    def page_at(self, original_offset: int) -> int | None:
        """The 1-based page holding an original-text offset, or None for unpaged documents."""
        if not self.pages:
            return None
        page = 1
        for i, start in enumerate(self.pages):
            if start <= original_offset:
                page = i + 1
            else:
                break
        return page


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: cleaned text for search, original words for display."""

    id: int
    source: str
    title: str
    start: int  # character span in the document's original text
    end: int
    text: str  # cleaned text (what is embedded and shown to the model)
    original: str = ""  # the same span as written
    page: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, with its score (higher is better)."""

    chunk: Chunk
    score: float

    def to_dict(self) -> dict:
        return {"score": self.score, **self.chunk.to_dict()}


@dataclass(frozen=True)
class Quote:
    """A sentence of a cited passage that backs the answer, as cleaned (no boilerplate lines),
    with its span in the document's original text and the answer's words marked in it."""

    text: str
    start: int  # character span in the document's original text
    end: int
    marks: tuple[tuple[int, int], ...] = ()  # spans within `text` of the words the answer uses

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Citation:
    """A passage an answer cites as [number], and the sentences of it that back the answer."""

    number: int
    source: str
    title: str
    start: int
    end: int
    text: str
    page: int | None = None
    score: float = 0.0
    quotes: tuple[Quote, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


# What became of a question: answered from cited passages that back it; refused (no passage
# close enough, or the model said the documents don't say); withheld (the model answered, but
# the check against its passages or the calibrated confidence did not let it through).
OUTCOMES = ("answered", "refused", "withheld")


@dataclass(frozen=True)
class Answer:
    """What `answer()` returns: the text, its citations and how it was reached."""

    text: str
    citations: tuple[Citation, ...] = ()
    question: str = ""  # the standalone question that was searched
    supported: bool = True
    refused: bool = False  # the text says the documents do not contain the answer
    timings: dict = field(default_factory=dict, compare=False)
    outcome: str = "answered"  # one of OUTCOMES
    reason: str = ""  # why it was refused or withheld, in words
    draft: str = ""  # what the model wrote, before checking (shown only when answered)
    confidence: float | None = None  # the calibrated probability that the draft is right
    signals: dict = field(default_factory=dict, compare=False)  # what the decision weighed
    passages: tuple[Hit, ...] = field(default=(), compare=False)  # what the model was shown

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "question": self.question,
            "supported": self.supported,
            "refused": self.refused,
            "outcome": self.outcome,
            "reason": self.reason,
            "draft": self.draft,
            "confidence": self.confidence,
            "signals": dict(self.signals),
            "passages": [h.to_dict() for h in self.passages],
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class IndexSummary:
    """What a build or update did."""

    index_dir: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    skipped: tuple[tuple[str, str], ...] = ()  # (source, reason)
    documents: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks embedded in this run
    seconds: float = 0.0
    full: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
