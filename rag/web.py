"""The chat page: a Gradio app over an Engine that streams cited answers and manages documents."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Answer, Engine, Hit, RagError, ingest
from . import engine as shared_engine

if TYPE_CHECKING:
    import gradio as gr

TITLE = "Ask your documents"
MAX_UPLOAD_MB = 50
# Chats answered at once; the model generates for one at a time, the others wait in its lock.
CONCURRENCY = 4
MAX_NAME_CHARS = 120

_UNSAFE = re.compile(r"[^\w .()+-]")  # \w keeps letters and digits of every script
_CITED_IN = re.compile(r"\[(\d+)\]")
_WORD = re.compile(r"\w+")

# -- the one function both the page and the API endpoint adapt ------------------------------


def turn(
    engine: Engine, message: str, history: Sequence[Any] | None = None, k: int | None = None
) -> Iterator[tuple[str, Answer | None, list[Hit]]]:
    """Answer one message: (text so far, None, []) while streaming, then (text, Answer, hits).

    The final text is `answer.text`, with its [n] markers renumbered to match the citations;
    `hits` are the passages searched for the standalone question. Raises `RagError`.
    """
    pieces: list[str] = []
    for item in engine.stream(message, _turns(history), k):
        if isinstance(item, Answer):
            yield item.text, item, list(item.passages)
        else:
            pieces.append(item)
            yield "".join(pieces), None, []


def _turns(history: Sequence[Any] | None) -> list[dict]:
    """Prior turns as {"role", "content"} dicts, from messages or (user, assistant) pairs."""
    turns: list[dict] = []
    for item in history or []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            turns.append({"role": item["role"], "content": _text(item.get("content"))})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            turns.append({"role": "user", "content": _text(item[0])})
            turns.append({"role": "assistant", "content": _text(item[1])})
    return [t for t in turns if t["content"]]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, (list, tuple)):  # Gradio's list of content parts
        return " ".join(_text(part) for part in content).strip()
    return ""


def engine_for(base: Engine, model: str | None) -> Engine:
    """The engine answering with `model`: the page's own, or the shared one for that model."""
    if not model or model == base.config.model:
        return base
    return shared_engine(base.config.with_(model=model))


def warm(engine: Engine) -> list[str]:
    """Open the index (building the default one if missing) and load the models; the problems.

    The page still starts when something is missing: it shows the same messages to the user.
    """
    problems = []
    for part in ("embedder", "llm"):  # the embedder opens the index first
        try:
            getattr(engine, part)
        except RagError as exc:
            problems.append(str(exc))
    return problems


# -- uploads --------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A file name safe to create in the corpus folder: the base name only, no leading dots,
    no `..`, only letters (of any script), digits, spaces and `._-()+`."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", str(name)))[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE.sub("_", base)
    base = re.sub(r"\.{2,}", ".", base)
    base = re.sub(r"\s+", " ", base).strip(" .")
    if len(base) > MAX_NAME_CHARS:
        stem, suffix = os.path.splitext(base)
        base = stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") + suffix
    if not base.strip("_"):
        raise RagError(f"the file name {name!r} has no usable characters: rename it and retry")
    return base


def upload_target(corpus: Path, name: str) -> Path:
    """Where an uploaded file called `name` is saved: always directly inside `corpus`."""
    from .read import SUPPORTED

    clean = safe_name(name)
    suffix = Path(clean).suffix.lower()
    if suffix not in SUPPORTED:
        kinds = ", ".join(sorted(SUPPORTED))
        raise RagError(
            f"{clean} is not a document this app reads ({suffix or 'no extension'}): "
            f"upload {kinds} files"
        )
    root = Path(corpus).resolve()
    target = (root / clean).resolve()
    if target.parent != root:
        raise RagError(f"the file name {name!r} points outside the documents folder")
    return target


def save_upload(corpus: Path, upload: Path | str, name: str | None = None) -> Path:
    """Copy one uploaded file into the corpus folder under a safe name (replacing a same-named
    file), checking its type and size."""
    upload = Path(upload)
    target = upload_target(corpus, name or upload.name)
    size = upload.stat().st_size
    if size > MAX_UPLOAD_MB * 1024 * 1024:
        raise RagError(
            f"{target.name} is {size / 1024 / 1024:.1f} MB; files up to {MAX_UPLOAD_MB} MB "
            "can be added"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copied under a hidden name, then renamed: a rebuild running now skips hidden files, so
    # it never reads half a file.
    partial = target.with_name(f".upload-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(upload, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def check_port(host: str, port: int) -> None:
    """Raise RagError when `port` on `host` is taken, before minutes are spent loading models."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server will: a port left in TIME_WAIT by a server that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RagError(_port_message(host, port, exc)) from exc


def _port_message(host: str, port: int | None, exc: OSError) -> str:
    reason = exc.strerror or str(exc).split(".")[0]
    return (
        f"cannot listen on {host}:{port} ({reason}): another program (perhaps another "
        "`rag chat`) is using it; stop it or choose another port with --port"
    )


def auth_from_env() -> tuple[str, str]:
    """The (user, password) login from the environment variable RAG_AUTH="user:password"."""
    return _login(
        os.environ.get("RAG_AUTH", ""), '--auth-from-env needs RAG_AUTH set to "user:password"'
    )


def login(flag: str | None = None, require_env: bool = False) -> tuple[str, str] | None:
    """The page's login: the `--auth` flag's "user:password", else RAG_AUTH when it is set
    (required with `require_env`), else None: no login."""
    if flag is not None:
        return _login(flag, '--auth needs "user:password"')
    if require_env:
        return auth_from_env()
    if os.environ.get("RAG_AUTH"):
        return _login(os.environ["RAG_AUTH"], 'RAG_AUTH must be "user:password" (or unset it)')
    return None


def _login(value: str, problem: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    user = user.strip()  # as Gradio strips the name typed in its login form
    if not sep or not user or not password:
        raise RagError(problem)
    return user, password


DRAFTING = "*Draft, being checked against the passages…*"


def open_to_network(host: str) -> bool:
    """Whether `host` lets other machines reach the page (anything but a loopback address)."""
    return host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127.")


# -- what the page shows --------------------------------------------------------------------


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
                f'<div class="rag-meta">{_where(c.source, c.page, c.start, c.end)}</div>'
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
                f"score {hit.score:.2f}</div>"
                f'<div class="rag-quote">{_excerpt(ch.original or ch.text)}</div></li>'
            )
        parts.append("</ol></details>")
    parts.append("</div>")
    return "".join(parts)


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
"""

PAGE_CSS = """
.gradio-container { width: 100% !important; max-width: 980px !important; margin: 0 auto; }
#title h1 { margin-bottom: 0; }
#title p { margin-top: 0.2em; color: var(--body-text-color-subdued); }
"""


# -- the app --------------------------------------------------------------------------------


def build_app(engine: Engine) -> gr.Blocks:
    """The chat page over `engine`: a Chat tab (also the `/chat` API) and a Documents tab."""
    import gradio as gr

    from .models import available
    from .read import SUPPORTED

    config = engine.config
    kinds = ", ".join(f"`{suffix}`" for suffix in sorted(SUPPORTED))
    models = available(Path(config.models_dir))
    if config.model not in models:
        models.insert(0, config.model)

    def respond(
        message: str, history: list[dict], shown: list[dict], k: float, model: str
    ) -> Iterator[tuple]:
        history, shown = list(history or []), list(shown or [])
        if message and message.strip():
            shown.append({"role": "user", "content": message})
        shown.append({"role": "assistant", "content": "…"})
        yield "", shown, ANSWERING, history, shown
        try:
            chosen = engine_for(engine, model)
            for text, answer, searched in turn(chosen, message, history, int(k) if k else None):
                if answer is None:
                    # A draft until it has been checked against its passages: marked so.
                    draft = f"{DRAFTING}\n\n{text} ▍"
                    shown[-1] = {"role": "assistant", "content": draft}
                    yield gr.skip(), shown, gr.skip(), gr.skip(), gr.skip()
                    continue
                note = ""
                if not answer.supported and not answer.refused:
                    note = "\n\n*⚠ Not supported by a cited passage.*"
                shown[-1] = {"role": "assistant", "content": answer.text + note}
                history += [
                    {"role": "user", "content": message},
                    {"role": "assistant", "content": answer.text},
                ]
                yield gr.skip(), shown, sources_html(answer, searched), history, shown
        except RagError as exc:
            gr.Warning(str(exc))
            shown[-1] = {"role": "assistant", "content": f"⚠ {exc}"}
            yield gr.skip(), shown, problem_html(str(exc)), history, shown

    def chat(message: str, history: list | None = None) -> Iterator[tuple[str, list[dict]]]:
        """Answer a question from the documents, streamed. Returns (answer text, sources): each
        source is a cited passage (number, source file, title, page, text, score). `history`
        is the earlier turns as [{"role": "user"|"assistant", "content": "..."}]."""
        try:
            for text, answer, _ in turn(engine, message, history):
                yield text, [c.to_dict() for c in answer.citations] if answer else []
        except RagError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def clear() -> tuple:
        return [], WAITING, [], [], ""

    def add_files(files: list[str] | None) -> tuple[str, None]:
        saved, refused = [], []
        for upload in files or []:
            try:
                saved.append(save_upload(Path(config.corpus), upload).name)
            except (RagError, OSError) as exc:
                refused.append(str(exc))
        lines = []
        if saved:
            lines.append(
                f"Added {len(saved)} file(s) to `{config.corpus}`: "
                + ", ".join(f"`{n}`" for n in saved)
                + ". Press **Rebuild the index** to search them."
            )
        lines += [f"⚠ {r}" for r in refused]
        for r in refused:
            gr.Warning(r)
        return "\n\n".join(lines), None

    def rebuild(progress: Any = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        def report(stage: str, done: int, total: int) -> None:
            label, unit = ingest.STAGES.get(stage, (stage, "step"))
            progress((done, total) if total else None, desc=label, unit=f"{unit}s")

        try:
            summary = engine.build(_rebuild_paths(engine), progress=report)
        except RagError as exc:
            gr.Warning(str(exc))
            return f"⚠ {exc}", index_html(engine)
        skipped = "".join(f"\n- skipped `{s}`: {r}" for s, r in summary.skipped)
        return (
            f"Rebuilt in {summary.seconds:.1f} s: {summary.documents} documents, "
            f"{summary.chunks} passages; added {len(summary.added)}, updated "
            f"{len(summary.updated)}, removed {len(summary.removed)}, unchanged "
            f"{summary.unchanged}.{skipped}"
        ), index_html(engine)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {TITLE}\nAnswers come only from your documents, with the passages they cite.",
            elem_id="title",
        )
        history = gr.State([])
        shown = gr.State([])
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chatbot",
                height=380,
                latex_delimiters=[],  # "$5 and $10" in news text is money, not maths
                placeholder="Ask a question about your documents.",
            )
            with gr.Row(equal_height=True):
                question = gr.Textbox(
                    placeholder="Ask a question, e.g. What did Lappo threaten?",
                    show_label=False,
                    lines=1,
                    max_lines=6,
                    scale=6,
                    elem_id="question",
                    autofocus=True,
                )
                send = gr.Button("Ask", variant="primary", scale=1, min_width=120, elem_id="send")
                new_chat = gr.Button("New chat", scale=1, min_width=120, elem_id="new-chat")
            sources = gr.HTML(WAITING, css_template=PANEL_CSS, elem_id="sources", padding=True)
            with gr.Accordion("Settings", open=False):
                model = gr.Dropdown(
                    models, value=config.model, label="Answer model", elem_id="model"
                )
                k = gr.Slider(1, 10, value=config.k, step=1, label="Passages given to the model")
        with gr.Tab("Documents") as documents_tab:
            gr.Markdown(
                f"Add {kinds} files (up to {MAX_UPLOAD_MB} MB each) to the documents folder "
                f"`{config.corpus}`, then rebuild the index. Chat keeps answering from the "
                "current index while it rebuilds."
            )
            files = gr.File(
                label="Add documents",
                file_count="multiple",
                file_types=sorted(SUPPORTED),
                type="filepath",
                elem_id="upload",
            )
            upload_status = gr.Markdown()
            rebuild_button = gr.Button("Rebuild the index", variant="primary", elem_id="rebuild")
            rebuild_status = gr.Markdown()
            gr.Markdown("### What is indexed")
            index_panel = gr.HTML(css_template=PANEL_CSS, elem_id="index", padding=True)
        with gr.Column(visible=False):  # the inputs and outputs of the /chat API endpoint
            api_message = gr.Textbox(label="message")
            api_history = gr.JSON(label="history")
            api_text = gr.Textbox(label="answer")
            api_sources = gr.JSON(label="sources")
            api_button = gr.Button()

        gr.on(
            [question.submit, send.click],
            respond,
            [question, history, shown, k, model],
            [question, chatbot, sources, history, shown],
            api_name="respond",
            api_visibility="undocumented",
            show_progress="minimal",
        )
        new_chat.click(
            clear, None, [chatbot, sources, history, shown, question], api_visibility="private"
        )
        api_button.click(chat, [api_message, api_history], [api_text, api_sources], api_name="chat")
        files.upload(
            add_files,
            files,
            [upload_status, files],
            api_name="add_files",
            api_visibility="undocumented",
        )
        rebuild_button.click(
            rebuild,
            None,
            [rebuild_status, index_panel],
            concurrency_limit=1,
            concurrency_id="rebuild",
            api_name="rebuild",
            api_visibility="undocumented",
        )
        show_index = {"fn": lambda: index_html(engine), "outputs": index_panel}
        app.load(**show_index, api_visibility="private")
        documents_tab.select(**show_index, api_visibility="private")
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=64)
    return app


def _rebuild_paths(engine: Engine) -> list[Path]:
    """The folders the index was built from, plus the corpus folder that uploads go to."""
    corpus = Path(engine.config.corpus).resolve()
    try:
        roots = [Path(p) for p in engine.index.manifest.get("paths", [])]
    except RagError:
        roots = []
    if not any(corpus == r or r in corpus.parents for r in roots):
        roots.append(corpus)
    return roots


def launch(
    app: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    prevent_thread_lock: bool = False,
) -> str:
    """Serve the page (on 127.0.0.1 unless told otherwise); returns its local URL."""
    import gradio as gr

    # System fonts: the default theme fetches Google Fonts, and this app runs offline.
    theme = gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            share=share,
            auth=auth,
            prevent_thread_lock=prevent_thread_lock,
            max_file_size=f"{MAX_UPLOAD_MB}mb",
            footer_links=["api", "settings"],
            ssr_mode=False,
            theme=theme,
            css=PAGE_CSS,
        )
    except OSError as exc:  # Gradio: "Cannot find empty port in range: 7860-7860. ..."
        if "port" not in str(exc).lower():
            raise
        raise RagError(_port_message(host, port, exc)) from exc
    return url
