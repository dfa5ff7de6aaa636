"""Typed, frozen data passed between the stages: documents, chunks, hits, citations, answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Document:
    """One readable file: its original text, its cleaned text and the map between them."""

    source: str  # path relative to the corpus root, with forward slashes
    path: str  # absolute path on disk
    title: str
    original: str  # the text as written (after decoding)
    text: str  # the cleaned text that is chunked and embedded
    offsets: tuple[
        int, ...
    ]  # offsets[i] = index in `original` of cleaned char i; len(text)+1 entries
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
class Citation:
    """A passage an answer cites as [number]."""

    number: int
    source: str
    title: str
    start: int
    end: int
    text: str
    page: int | None = None
    score: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """What `answer()` returns: the text, its citations and how it was reached."""

    text: str
    citations: tuple[Citation, ...] = ()
    question: str = ""  # the standalone question that was searched
    supported: bool = True
    refused: bool = False  # the answer says the documents do not contain it
    timings: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "question": self.question,
            "supported": self.supported,
            "refused": self.refused,
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
