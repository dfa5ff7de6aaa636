"""Private, offline question answering over your own documents, with cited answers."""

from .config import Config
from .errors import (
    BadQuestion,
    EmptyCorpus,
    IndexBusy,
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    ModelMissing,
    ModelUnavailable,
    PromptError,
    RagError,
    UnreadableDocument,
)
from .pipeline import Engine, answer, build, engine, load, search, stream
from .types import Answer, Chunk, Citation, Document, Hit, IndexSummary, Quote

__all__ = [
    "Answer",
    "BadQuestion",
    "Chunk",
    "Citation",
    "Config",
    "Document",
    "EmptyCorpus",
    "Engine",
    "Hit",
    "IndexBusy",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IndexSummary",
    "ModelMissing",
    "ModelUnavailable",
    "PromptError",
    "Quote",
    "RagError",
    "UnreadableDocument",
    "answer",
    "build",
    "engine",
    "load",
    "search",
    "stream",
]
