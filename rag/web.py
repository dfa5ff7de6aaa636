"""The chat page: a Gradio app over an Engine that streams cited answers and manages documents."""

from __future__ import annotations

import os
import re
import shutil
import socket
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Answer, Engine, Hit, RagError, filters
from . import engine as shared_engine
from .panels import (  # noqa: F401 - sources_html is part of this module's API
    ANSWERING,
    PAGE_CSS,
    PANEL_CSS,
    WAITING,
    index_html,
    problem_html,
    sources_html,
)

if TYPE_CHECKING:
    import gradio as gr

TITLE = "Ask your documents"
MAX_UPLOAD_MB = 50
# Chats answered at once; the model generates for one at a time, the others wait in its lock.
CONCURRENCY = 4
MAX_NAME_CHARS = 120

_UNSAFE = re.compile(r"[^\w .()+-]")  # \w keeps letters and digits of every script

# -- the one function both the page and the API endpoint adapt ------------------------------


def turn(
    engine: Engine,
    message: str,
    history: Sequence[Any] | None = None,
    k: int | None = None,
    where: filters.Filter = None,
) -> Iterator[tuple[str, Answer | None, list[Hit]]]:
    """Answer one message: (text so far, None, []) while streaming, then (text, Answer, hits).

    The final text is `answer.text`, with its [n] markers renumbered to match the citations;
    `hits` are the passages searched for the standalone question. Raises `RagError`.
    """
    pieces: list[str] = []
    for item in engine.stream(message, _turns(history), k, where):
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


def engine_for(base: Engine, model: str | None, collection: str | None = None) -> Engine:
    """The engine answering with `model` from `collection`: the page's own, or the shared one
    for those settings."""
    from .workspace import collections

    config = base.config
    if collection and collection != config.collection:
        config = collections.config_for(config, collection)
    if model and model != config.model:
        config = config.with_(model=model)
    return base if config == base.config else shared_engine(config)


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


def login(
    flag: str | None = None, require_env: bool = False, file: Path | str | None = None
) -> tuple[str, str] | list[tuple[str, str]] | None:
    """The page's login: the `--auth` flag's "user:password", else RAG_AUTH when it is set
    (required with `require_env`), else None: no login. Several users: a file of
    "user:password" lines (`file`, else RAG_AUTH_FILE), each with their own conversations."""
    if flag is not None:
        return _login(flag, '--auth needs "user:password"')
    if require_env:
        return auth_from_env()
    file = file or os.environ.get("RAG_AUTH_FILE")
    if file:
        return logins(Path(file))
    if os.environ.get("RAG_AUTH"):
        return _login(os.environ["RAG_AUTH"], 'RAG_AUTH must be "user:password" (or unset it)')
    return None


def logins(file: Path) -> list[tuple[str, str]]:
    """The logins of a file: one "user:password" per line (blank lines and # comments
    skipped)."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read the logins file {file}: {exc}") from exc
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, password = _login(line, f'{file}, line {number}: write "user:password"')
        if user in found:
            raise RagError(f"{file}, line {number}: the user {user!r} is listed twice")
        found[user] = password
    if not found:
        raise RagError(f"the logins file {file} lists no user")
    return list(found.items())


def passwords(auth: tuple[str, str] | list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Every (user, password) of a login setting (none without a login)."""
    if not auth:
        return []
    return [auth] if isinstance(auth, tuple) else list(auth)


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


# -- the app --------------------------------------------------------------------------------


def build_app(engine: Engine, data_dir: Path | str | None = None) -> gr.Blocks:
    """The chat page over `engine` (see `rag.page`)."""
    from .page import build_app as build

    return build(engine, data_dir)


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
