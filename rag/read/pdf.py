"""Reading PDF files: the text layer of each page, the page starts, the title."""

from __future__ import annotations

import io

from ..errors import UnreadableDocument
from .common import JUNK_TITLE, Extracted, reason


def read_pdf(data: bytes) -> Extracted:
    """The text of a PDF, its title and where each page starts."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument("not a PDF (no %PDF header)")
    if b"%%EOF" not in data[-1024:]:
        raise UnreadableDocument("truncated or damaged PDF: no end-of-file marker")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError) as error:
                raise UnreadableDocument(f"encrypted PDF ({reason(error)})") from error
            if not opened:
                raise UnreadableDocument("encrypted PDF (needs a password)")
        pages = list(reader.pages)
    except UnreadableDocument:
        raise
    except Exception as error:  # pypdf raises many types on damaged files
        raise UnreadableDocument(f"truncated or damaged PDF: {reason(error)}") from error
    texts: list[str] = []
    failure: Exception | None = None
    for page in pages:
        try:
            texts.append((page.extract_text() or "").strip())
        except Exception as error:  # one bad page should not lose the others
            failure = failure or error
            texts.append("")
    if not any(texts):
        if failure:
            raise UnreadableDocument(f"truncated or damaged PDF: {reason(failure)}")
        raise UnreadableDocument("PDF has no text layer (scanned?)")
    starts: list[int] = []
    position = 0
    for text in texts:
        starts.append(position)
        position += len(text) + 2
    try:
        title = (reader.metadata or {}).get("/Title") or ""
    except Exception:  # a damaged info dictionary only costs the title
        title = ""
    title = "" if JUNK_TITLE.match(str(title)) else str(title)
    return "\n\n".join(texts), title, tuple(starts)
