"""Errors the user sees: each message says what happened and what to run next."""

from __future__ import annotations


class RagError(Exception):
    """Base error; its message is shown to the user as-is (one line, no traceback)."""


class IndexNotFound(RagError):
    """There is no index at the given folder."""


class IndexMismatch(RagError):
    """The index was built with another embedding model or an unknown format."""


class IndexCorrupt(RagError):
    """An index file is missing, truncated or unreadable."""


class IndexBusy(RagError):
    """Another rebuild holds the index lock."""


class EmptyCorpus(RagError):
    """No readable documents were found."""


class ModelMissing(RagError):
    """An embedding or answer model is missing, truncated or fails its checksum."""


class ModelUnavailable(RagError):
    """The answer model's server cannot be reached, is too slow, or answers with an error."""


class PromptError(RagError):
    """A prompt template is missing or a placeholder is unfilled."""


class BadQuestion(RagError):
    """The question is empty or unusable."""


class UnreadableDocument(RagError):
    """One file cannot be read; the build skips it and reports the reason."""
