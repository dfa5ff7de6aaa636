"""What the chat page shows, as HTML: the sources of an answer, the index, notes and problems."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from .errors import RagError
from .pipeline import Engine
from .types import Answer, Chunk, Citation, Hit

_CITED_IN = re.compile(r"\[(\d+)\]")
_WORD = re.compile(r"\w+")


def sources_html(answer: Answer, searched: Sequence[Hit] = ()) -> str:
    """The sources panel: notes, each cited passage, and the passages searched (collapsed)."""
    parts = ['<div class="rag-sources" data-state="done">']
    if not answer.citations:
        parts.append("<h3>Sources</h3>")
    if answer.outcome == "withheld":
        parts.append(
            '<p class="rag-note"><b>The documents don\'t say.</b> The answer model wrote an '
            "answer, but it is not shown because the passages do not back it: "
            f"{html.escape(answer.reason)}. Check the passages searched below.</p>"
        )
    elif answer.refused:
        parts.append(
            '<p class="rag-note"><b>The documents don\'t say.</b> None of the passages searched '
            "answers this; try other words, or add documents in the Documents tab.</p>"
        )
    elif not answer.supported:
        parts.append(
            '<p class="rag-warning">⚠ This answer is <b>not supported by a cited passage</b>: '
            "check it against the passages searched below.</p>"
        )
    if answer.citations:
        parts.append(f"<h3>Sources ({len(answer.citations)})</h3><ol class='rag-list'>")
        for c in answer.citations:
            words = _cited_words(answer.text, c.number)
            parts.append(
                f'<li class="rag-source"><div class="rag-head"><span class="rag-num">'
                f"[{c.number}]</span> {html.escape(c.title)}</div>"
                f'<div class="rag-meta">{_where(c.source, c.page, c.start, c.end)} · '
                f"{_open_button(c)}</div>"
                + "".join(
                    f'<blockquote class="rag-support">{_marked(q.text, q.marks)}</blockquote>'
                    for q in c.quotes
                )
                + f'<details class="rag-passage"><summary>Whole passage</summary>'
                f'<div class="rag-quote">{_excerpt(c.text, words)}</div></details></li>'
            )
        parts.append("</ol>")
    if searched:
        parts.append(
            f'<details class="rag-searched"><summary>Passages searched ({len(searched)})'
            "</summary><ol class='rag-list'>"
        )
        for hit in searched:
            ch = hit.chunk
            parts.append(
                f'<li class="rag-source"><div class="rag-head">{html.escape(ch.title)}</div>'
                f'<div class="rag-meta">{_where(ch.source, ch.page, ch.start, ch.end)} · '
                f"score {hit.score:.2f} · {_open_button(ch)}</div>"
                f'<div class="rag-quote">{_excerpt(ch.original or ch.text)}</div></li>'
            )
        parts.append("</ol></details>")
    parts.append("</div>")
    return "".join(parts)


def _open_button(c: Citation | Chunk) -> str:
    """The button that opens the document at this passage, its quotes marked (see
    rag.workspace.viewer)."""
    quotes = ",".join(f"{q.start}-{q.end}" for q in getattr(c, "quotes", ()))
    return (
        f'<button class="rag-open" type="button" data-source="{html.escape(c.source)}" '
        f'data-start="{c.start}" data-end="{c.end}" data-quotes="{quotes}">'
        "Show in document</button>"
    )


def _where(source: str, page: int | None, start: int, end: int) -> str:
    page_note = f" · page {page}" if page else ""
    return f"<code>{html.escape(source)}</code>{page_note} · characters {start:,}–{end:,}"


def _cited_words(text: str, number: int) -> set[tuple[str, str]]:
    """Word pairs of the answer's sentences that cite [number] (lowercase bigrams)."""
    pairs: set[tuple[str, str]] = set()
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        if str(number) in _CITED_IN.findall(sentence):
            words = [w.lower() for w in _WORD.findall(_CITED_IN.sub(" ", sentence))]
            pairs |= set(zip(words, words[1:]))
    return pairs


def _marked(text: str, marks: Sequence[tuple[int, int]]) -> str:
    """A quote as escaped HTML with the answer's words in <mark>."""
    out, last = [], 0
    for a, b in sorted(marks):
        if a < last:
            continue
        out += [html.escape(text[last:a]), f"<mark>{html.escape(text[a:b])}</mark>"]
        last = b
    out.append(html.escape(text[last:]))
    return "".join(out)


def _excerpt(text: str, pairs: set[tuple[str, str]] = frozenset()) -> str:
    """A passage as escaped HTML paragraphs; runs of words the answer repeats are marked."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{_highlight(p, pairs)}</p>".replace("\n", "<br>") for p in paragraphs)


def _highlight(text: str, pairs: set[tuple[str, str]]) -> str:
    # A word is marked when it and a neighbour appear side by side in the citing sentence,
    # so the shared phrase stands out rather than every common word.
    words = list(_WORD.finditer(text))
    low = [m.group().lower() for m in words]
    shared = {(i, i + 1) for i in range(len(words) - 1) if (low[i], low[i + 1]) in pairs}
    marked = sorted({i for pair in shared for i in pair})
    runs: list[list[int]] = []
    for i in marked:
        joined = (
            runs
            and runs[-1][-1] == i - 1
            and "\n" not in text[words[i - 1].end() : words[i].start()]
        )
        if joined:
            runs[-1].append(i)
        else:
            runs.append([i])
    out, last = [], 0
    for run in runs:
        start, end = words[run[0]].start(), words[run[-1]].end()
        out += [html.escape(text[last:start]), f"<mark>{html.escape(text[start:end])}</mark>"]
        last = end
    out.append(html.escape(text[last:]))
    return "".join(out)


def _panel(kind: str, message: str) -> str:
    return f'<div class="rag-sources" data-state="{kind}"><p class="rag-{kind}">{message}</p></div>'


WAITING = _panel("waiting", "Sources of the answer appear here.")
ANSWERING = _panel("answering", "Searching the documents and writing the answer…")


def problem_html(message: str) -> str:
    return _panel("problem", f"⚠ {html.escape(message)}")


def index_html(engine: Engine) -> str:
    """What the live index holds: its documents with their passages, model and build time."""
    try:
        manifest = engine.index.manifest
    except RagError as exc:
        return problem_html(str(exc))
    documents = manifest.get("documents", {})
    built = str(manifest.get("created", "?")).replace("T", " ")[:16]
    paged = any(info.get("pages") for info in documents.values())
    rows = "".join(
        f"<tr><td>{html.escape(info.get('title') or source)}</td>"
        f"<td><code>{html.escape(source)}</code></td><td>{info.get('count', 0)}</td>"
        + (f"<td>{info.get('pages') or ''}</td>" if paged else "")
        + "</tr>"
        for source, info in sorted(documents.items())
    )
    skipped = "".join(
        f"<li><code>{html.escape(str(source))}</code>: {html.escape(str(reason))}</li>"
        for source, reason in manifest.get("skipped", [])
    )
    return (
        '<div class="rag-sources" data-state="done">'
        f"<p><b>{len(documents)}</b> documents · <b>{manifest.get('chunks', 0)}</b> passages · "
        f"embedding model <code>{html.escape(str(manifest.get('embed_model', '?')))}</code> · "
        f"built {html.escape(built)}</p>"
        "<table class='rag-table'><thead><tr><th>Title</th><th>File</th><th>Passages</th>"
        + ("<th>Pages</th>" if paged else "")
        + f"</tr></thead><tbody>{rows}</tbody></table>"
        + (f"<p>Skipped:</p><ul>{skipped}</ul>" if skipped else "")
        + "</div>"
    )


PANEL_CSS = """
.rag-sources { font-size: var(--text-md); line-height: 1.5; }
.rag-sources h3 { margin: 0.25em 0 0.5em; font-size: var(--text-lg); }
.rag-list { list-style: none; padding: 0; margin: 0; }
.rag-source { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 0.6em 0.9em; margin: 0 0 0.6em; background: var(--block-background-fill); }
.rag-head { font-weight: 600; }
.rag-num { color: var(--color-accent); margin-right: 0.2em; }
.rag-meta { color: var(--body-text-color-subdued); font-size: var(--text-sm); margin: 0.1em 0 0.4em; }
.rag-quote { margin: 0; padding: 0 0 0 0.8em;
  border-left: 3px solid var(--border-color-accent); color: var(--body-text-color); }
.rag-quote p { margin: 0 0 0.35em; }
.rag-support { margin: 0.2em 0 0.4em; padding: 0 0 0 0.8em; font-style: italic;
  border-left: 3px solid var(--color-accent); }
.rag-support mark { background: var(--color-accent-soft); color: inherit; padding: 0 1px; }
.rag-passage summary { cursor: pointer; font-size: 0.9em; opacity: 0.8; }
.rag-quote p:last-child { margin-bottom: 0; }
.rag-source mark { background: var(--color-accent-soft); color: inherit; padding: 0 1px; }
.rag-note, .rag-waiting, .rag-answering { color: var(--body-text-color-subdued); }
.rag-note { border-left: 3px solid var(--border-color-primary); padding: 0.4em 0.8em; }
.rag-warning, .rag-problem { border-left: 3px solid #d97706; padding: 0.4em 0.8em;
  background: rgba(217, 119, 6, 0.08); }
.rag-searched summary { cursor: pointer; margin: 0.5em 0; font-weight: 600; }
.rag-table { border-collapse: collapse; width: 100%; font-size: var(--text-sm);
  border: none !important; }
.rag-table tr { border: none !important; }
.rag-table th, .rag-table td { text-align: left; padding: 0.35em 0.6em; background: none;
  border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
.rag-table th { font-weight: 600; }
.rag-open { font-size: var(--text-sm); padding: 0 0.5em; cursor: pointer;
  border: 1px solid var(--border-color-accent); border-radius: var(--radius-sm);
  background: none; color: var(--color-accent); }
"""

VIEWER_CSS = """
.rag-viewer { font-size: var(--text-md); line-height: 1.55; }
.rag-viewer-head { margin-bottom: 0.5em; color: var(--body-text-color-subdued); }
.rag-viewer-text { white-space: pre-wrap; max-height: 420px; overflow-y: auto;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 0.6em 0.9em; }
.rag-cited { background: var(--color-accent-soft); color: inherit; }
.rag-cited-words { background: #fde68a; color: #111; font-weight: 600; }
.rag-page-break { border-top: 1px dashed var(--border-color-primary); margin: 0.6em 0;
  font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.rag-note { color: var(--body-text-color-subdued); }
"""

PAGE_CSS = """
.gradio-container { width: 100% !important; max-width: 980px !important; margin: 0 auto; }
#title h1 { margin-bottom: 0; }
#title p { margin-top: 0.2em; color: var(--body-text-color-subdued); }
"""
