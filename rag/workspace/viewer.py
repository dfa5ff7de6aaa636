"""The document viewer: a cited document's text, opened at the cited span with the cited words
marked.

Only a document of the collection's index is shown, and only when its file is inside one of
the collection's own folders (its documents folder, or a folder it was indexed from), after
symbolic links are followed: a crafted name ("../../etc/passwd", an absolute path, a link
pointing out) is refused, not read.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from .. import store
from ..config import Config
from ..errors import RagError, UnreadableDocument
from ..read import ocr
from ..read import read as read_document

WINDOW = 20_000  # characters shown on each side of the span of a long document


def allowed_path(config: Config, source: str) -> Path:
    """The file of `source` in the collection of `config`, when it may be shown; raises
    RagError otherwise (the same message whether the name is unknown or points outside)."""
    refused = RagError(f"{source!r} is not a document of the collection {config.collection!r}")
    try:
        manifest = store.open_store(config).manifest()
    except RagError:
        raise refused from None
    info = manifest.get("documents", {}).get(str(source))
    if not isinstance(info, dict) or not info.get("path"):
        raise refused
    path = Path(os.path.realpath(info["path"]))
    roots = [Path(config.corpus), *(Path(p) for p in manifest.get("paths", []))]
    inside = any(
        path == root or root in path.parents for root in (Path(os.path.realpath(r)) for r in roots)
    )
    if not inside or not path.is_file():
        raise refused
    return path


def render(
    config: Config,
    source: str,
    start: int,
    end: int,
    quotes: Sequence[tuple[int, int]] = (),
) -> str:
    """The viewer's HTML: the document's text with the cited span (`start`–`end` in its
    original text) marked as the passage and each quote span marked as the cited words."""
    path = allowed_path(config, source)
    options = ocr.Options(languages=config.ocr_languages, cache=config.ocr_cache)
    try:
        doc = read_document(path, path.parent, options)
    except UnreadableDocument as exc:
        raise RagError(f"{source} cannot be shown: {exc}") from exc
    text = doc.original
    start, end = max(0, min(int(start), len(text))), max(0, min(int(end), len(text)))
    if end < start:
        start, end = end, start
    lo, hi = max(0, start - WINDOW), min(len(text), end + WINDOW)
    spans = sorted(
        (max(a, start), min(b, end))
        for a, b in ((int(a), int(b)) for a, b in quotes)
        if min(b, end) > max(a, start)
    )
    breaks = {p: i + 1 for i, p in enumerate(doc.pages) if lo < p < hi}
    cuts = sorted({lo, hi, start, end, *(x for s in spans for x in s), *breaks})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        if a in breaks:
            out.append(f'<div class="rag-page-break">page {breaks[a]}</div>')
        piece = html.escape(text[a:b])
        if start <= a and b <= end:
            cited = any(s <= a and b <= e for s, e in spans)
            kind = "rag-cited-words" if cited else "rag-cited"
            anchor = ' id="rag-cited-start"' if a == start else ""
            piece = f'<mark class="{kind}"{anchor}>{piece}</mark>'
        out.append(piece)
    page = doc.page_at(start)
    where = f" · page {page}" if page else ""
    head = (
        f'<div class="rag-viewer" data-source="{html.escape(source)}">'
        f'<div class="rag-viewer-head"><b>{html.escape(doc.title or source)}</b> · '
        f"<code>{html.escape(source)}</code>{where} · characters {start:,}–{end:,}</div>"
    )
    before = "<p class='rag-note'>…</p>" if lo > 0 else ""
    after = "<p class='rag-note'>…</p>" if hi < len(text) else ""
    return f'{head}{before}<div class="rag-viewer-text">{"".join(out)}</div>{after}</div>'
