"""The chat page's layout and events: chat, collections, saved conversations, feedback, the
document viewer and filters. It adapts the engine and the workspace; it holds no retrieval or
prompt logic.

Imported only when the page is built (it imports Gradio), and without postponed annotations:
Gradio reads the handlers' annotations to hand them the request (the logged-in user), the like
data and the event data.
"""

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from . import Engine, RagError, ingest
from .config import DEFAULT_COLLECTION
from .panels import (
    ANSWERING,
    PANEL_CSS,
    VIEWER_CSS,
    WAITING,
    index_html,
    problem_html,
    sources_html,
)
from .web import (
    CONCURRENCY,
    DRAFTING,
    MAX_UPLOAD_MB,
    TITLE,
    _rebuild_paths,
    engine_for,
    save_upload,
    turn,
)
from .workspace import chats, collections, viewer

NOT_GIVEN, NOWHERE = "?", "-"  # the feedback form's "document that holds the answer" choices

# A click on "Show in document" in the sources panel becomes the panel's click event, with the
# cited span as its data (the panel's HTML is replaced on every answer, so the listener sits on
# the panel itself).
OPEN_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('.rag-open');
  if (!button) return;
  trigger('click', {source: button.dataset.source, start: button.dataset.start,
                    end: button.dataset.end, quotes: button.dataset.quotes});
});
"""
SCROLL_JS = """
watch('value', () => {
  const mark = element.querySelector('#rag-cited-start');
  if (mark) mark.scrollIntoView({block: 'center'});
});
"""


def user_of(request: Any) -> str:
    """The logged-in user's name ("" when the page has no login)."""
    return str(getattr(request, "username", None) or "")


def shown_turns(found: dict) -> tuple[list[dict], list[dict], dict]:
    """A saved conversation as the page shows it: chat messages, the history for follow-ups,
    and which message is which saved turn (for feedback)."""
    shown, history, turn_of = [], [], {}
    for t in found["turns"]:
        result = t["result"]
        note = ""
        if result.get("outcome") == "answered" and not result.get("supported", True):
            note = "\n\n*⚠ Not supported by a cited passage.*"
        shown += [
            {"role": "user", "content": t["question"]},
            {"role": "assistant", "content": t["answer"] + note},
        ]
        history += [
            {"role": "user", "content": t["question"]},
            {"role": "assistant", "content": t["answer"]},
        ]
        turn_of[str(len(shown) - 1)] = t["id"]
    return shown, history, turn_of


def where_of(path: str, types: list[str] | None, since: str, until: str) -> dict:
    """The page's filter controls as a `rag.filters` dict."""
    return {
        "path": [p.strip() for p in (path or "").split(",") if p.strip()],
        "type": list(types or []),
        "since": (since or "").strip() or None,
        "until": (until or "").strip() or None,
    }


def build_app(engine: Engine, data_dir: Path | str | None = None) -> gr.Blocks:
    """The chat page over `engine`: Chat (also the `/chat` API), Documents and Collections."""
    from .models import available
    from .read import SUPPORTED

    config = engine.config
    saved = chats.Workspace(data_dir or config.data_dir)
    kinds = ", ".join(f"`{suffix}`" for suffix in sorted(SUPPORTED))
    models = available(Path(config.models_dir))
    if config.model not in models:
        models.insert(0, config.model)

    def names() -> list[str]:
        return [c.name for c in collections.listed(config)]

    def engine_of(collection: str, model: str | None = None) -> Engine:
        return engine_for(engine, model, collection or config.collection)

    def chat_list(user: str, collection: str, chosen: str | None = None) -> Any:
        found = saved.conversations(user, collection)
        choices = [
            (
                f"{c['title']} · {time.strftime('%d %b %H:%M', time.localtime(c['updated']))}",
                c["id"],
            )
            for c in found
        ]
        ids = {c["id"] for c in found}
        return gr.update(choices=choices, value=chosen if chosen in ids else None)

    # -- chat ---------------------------------------------------------------------------

    def respond(
        message: str,
        history: list[dict],
        shown: list[dict],
        k: float,
        model: str,
        collection: str,
        conversation: str | None,
        turn_of: dict,
        path: str,
        types: list[str],
        since: str,
        until: str,
        request: gr.Request,
    ) -> Iterator[tuple]:
        history, shown, turn_of = list(history or []), list(shown or []), dict(turn_of or {})
        keep = (gr.skip(),) * 4
        if message and message.strip():
            shown.append({"role": "user", "content": message})
        shown.append({"role": "assistant", "content": "…"})
        yield "", shown, ANSWERING, history, shown, *keep
        try:
            chosen = engine_of(collection, model)
            where = where_of(path, types, since, until)
            for text, answer, searched in turn(
                chosen, message, history, int(k) if k else None, where
            ):
                if answer is None:
                    # A draft until it has been checked against its passages: marked so.
                    shown[-1] = {"role": "assistant", "content": f"{DRAFTING}\n\n{text} ▍"}
                    yield gr.skip(), shown, gr.skip(), gr.skip(), gr.skip(), *keep
                    continue
                note = ""
                if not answer.supported and not answer.refused:
                    note = "\n\n*⚠ Not supported by a cited passage.*"
                shown[-1] = {"role": "assistant", "content": answer.text + note}
                history += [
                    {"role": "user", "content": message},
                    {"role": "assistant", "content": answer.text},
                ]
                user = user_of(request)
                conversation, turn_id = saved.add_turn(
                    user,
                    conversation,
                    chosen.config.collection,
                    message,
                    answer,
                    settings(chosen, k, where),
                )
                turn_of[str(len(shown) - 1)] = turn_id
                named = chats.title_of(message) if len(turn_of) == 1 else gr.skip()
                yield (
                    gr.skip(),
                    shown,
                    sources_html(answer, searched),
                    history,
                    shown,
                    conversation,
                    turn_of,
                    chat_list(user, chosen.config.collection, conversation),
                    named,
                )
        except RagError as exc:
            gr.Warning(str(exc))
            shown[-1] = {"role": "assistant", "content": f"⚠ {exc}"}
            yield gr.skip(), shown, problem_html(str(exc)), history, shown, *keep

    def settings(chosen: Engine, k: float, where: dict) -> dict:
        c = chosen.config
        try:
            version = chosen.index.version
        except RagError:
            version = ""
        return {
            "collection": c.collection,
            "model": c.model,
            "k": int(k) if k else c.k,
            "retrieval": c.retrieval,
            "evidence_tokens": c.evidence_tokens,
            "min_confidence": c.min_confidence,
            "where": where,
            "index_version": version,
        }

    def chat_api(message: str, history: list | None = None) -> Iterator[tuple[str, list[dict]]]:
        """Answer a question from the documents, streamed. Returns (answer text, sources): each
        source is a cited passage (number, source file, title, page, text, score). `history`
        is the earlier turns as [{"role": "user"|"assistant", "content": "..."}]."""
        try:
            for text, answer, _ in turn(engine, message, history):
                yield text, [c.to_dict() for c in answer.citations] if answer else []
        except RagError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def new_chat() -> tuple:
        return [], WAITING, [], [], "", None, {}, gr.update(value=None), ""

    # -- saved conversations ------------------------------------------------------------

    def open_chat(conversation: str | None, request: gr.Request) -> tuple:
        if not conversation:
            return (gr.skip(),) * 7
        try:
            found = saved.conversation(user_of(request), conversation)
        except RagError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 7
        shown, history, turn_of = shown_turns(found)
        return shown, history, shown, conversation, turn_of, WAITING, found["title"]

    def rename_chat(conversation: str | None, title: str, collection: str, request: gr.Request):  # noqa: ANN202
        user = user_of(request)
        try:
            if not conversation:
                raise RagError("open a saved conversation to rename it")
            saved.rename(user, conversation, title)
        except RagError as exc:
            gr.Warning(str(exc))
        return chat_list(user, collection, conversation)

    def delete_chat(conversation: str | None, collection: str, request: gr.Request) -> tuple:
        user = user_of(request)
        try:
            if not conversation:
                raise RagError("open a saved conversation to delete it")
            saved.delete(user, conversation)
        except RagError as exc:
            gr.Warning(str(exc))
            return (gr.skip(),) * 9
        cleared = list(new_chat())
        cleared[7] = chat_list(user, collection)
        return tuple(cleared)

    def export_chat(conversation: str | None, request: gr.Request) -> Any:
        try:
            if not conversation:
                raise RagError("open or start a conversation to export it")
            text = saved.markdown(user_of(request), conversation)
        except RagError as exc:
            gr.Warning(str(exc))
            return gr.update(value=None, visible=False)
        folder = Path(tempfile.mkdtemp(prefix="rag-export-"))
        target = folder / f"conversation-{conversation[:8]}.md"
        target.write_text(text, encoding="utf-8")
        return gr.update(value=str(target), visible=True)

    # -- feedback -----------------------------------------------------------------------

    def like(turn_of: dict, collection: str, data: gr.LikeData, request: gr.Request) -> tuple:
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        turn_id = (turn_of or {}).get(str(index))
        if turn_id is None or data.liked not in (True, False):
            return gr.skip(), gr.update(visible=False), None
        rating = "up" if data.liked else "down"
        try:
            saved.rate(user_of(request), turn_id, rating)
        except RagError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.update(visible=False), None
        thanks = f"Thank you: saved as {'👍' if data.liked else '👎'}. Add details if you like."
        sources = [(NOT_GIVEN, NOT_GIVEN), ("No document says it", NOWHERE)]
        try:
            known = engine_of(collection).index.manifest.get("documents", {})
            sources += [(s, s) for s in sorted(known)]
        except RagError:
            pass
        return (
            thanks,
            gr.update(visible=True),
            {"turn": turn_id, "rating": rating, "sources": sources},
        )

    def feedback_form(pending: dict | None) -> Any:
        sources = (pending or {}).get("sources") or [(NOT_GIVEN, NOT_GIVEN)]
        return gr.update(choices=sources, value=NOT_GIVEN)

    def save_feedback(
        pending: dict | None, comment: str, right: str, source: str, request: gr.Request
    ) -> tuple:
        if not pending:
            return "Rate an answer with 👍 or 👎 first.", gr.skip()
        right_source = (
            None if source in (None, NOT_GIVEN) else ("" if source == NOWHERE else source)
        )
        try:
            saved.rate(
                user_of(request), pending["turn"], pending["rating"], comment, right, right_source
            )
        except RagError as exc:
            return f"⚠ {exc}", gr.skip()
        return "Saved. `rag feedback export` turns your ratings into test questions.", gr.update(
            visible=False
        )

    # -- the document viewer ------------------------------------------------------------

    def open_document(collection: str, data: gr.EventData) -> str:
        # The page's login applies to this event as to every other: no login, no call.
        picked = getattr(data, "_data", None) or {}
        try:
            quotes = [
                tuple(int(x) for x in pair.split("-"))
                for pair in str(picked.get("quotes") or "").split(",")
                if pair
            ]
            return viewer.render(
                engine_of(collection).config,
                str(picked.get("source", "")),
                int(picked.get("start", 0)),
                int(picked.get("end", 0)),
                quotes,
            )
        except (RagError, ValueError, TypeError) as exc:
            return problem_html(str(exc) if isinstance(exc, RagError) else "not a cited span")

    # -- collections and documents ------------------------------------------------------

    def switch(collection: str, request: gr.Request) -> tuple:
        user = user_of(request)
        chosen = engine_of(collection)
        note = (
            f"Collection **{collection}**: documents folder `{chosen.config.corpus}`."
            if collection
            else ""
        )
        cleared = list(new_chat())
        cleared[7] = chat_list(user, collection)
        return (*cleared, collection, index_html(chosen), note)

    def create(name: str) -> tuple:
        try:
            made = collections.create(config, name)
        except RagError as exc:
            gr.Warning(str(exc))
            return gr.skip(), f"⚠ {exc}", gr.skip()
        return (
            gr.update(choices=names(), value=made.name),
            f"Created **{made.name}**. Add documents in the Documents tab and rebuild.",
            "",
        )

    def ask_delete(collection: str) -> tuple:
        if collection == DEFAULT_COLLECTION:
            return gr.update(visible=False), "⚠ The default collection cannot be deleted."
        return (
            gr.update(visible=True),
            f"Delete **{collection}**: its index, its documents folder and every saved "
            "conversation in it? This cannot be undone.",
        )

    def confirm_delete(collection: str) -> tuple:
        try:
            collections.delete(config, collection)
            saved.delete_collection(collection)
        except RagError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.update(visible=False), f"⚠ {exc}"
        return (
            gr.update(choices=names(), value=DEFAULT_COLLECTION),
            gr.update(visible=False),
            f"Deleted **{collection}**.",
        )

    def add_files(files: list[str] | None, collection: str) -> tuple[str, None]:
        corpus = Path(engine_of(collection).config.corpus)
        added, refused = [], []
        for upload in files or []:
            try:
                added.append(save_upload(corpus, upload).name)
            except (RagError, OSError) as exc:
                refused.append(str(exc))
        lines = []
        if added:
            lines.append(
                f"Added {len(added)} file(s) to `{corpus}`: "
                + ", ".join(f"`{n}`" for n in added)
                + ". Press **Rebuild the index** to search them."
            )
        lines += [f"⚠ {r}" for r in refused]
        for r in refused:
            gr.Warning(r)
        return "\n\n".join(lines), None

    def rebuild(collection: str, progress: Any = gr.Progress()) -> tuple[str, str]:  # noqa: B008
        chosen = engine_of(collection)

        def report(stage: str, done: int, total: int) -> None:
            label, unit = ingest.STAGES.get(stage, (stage, "step"))
            progress((done, total) if total else None, desc=label, unit=f"{unit}s")

        try:
            summary = chosen.build(_rebuild_paths(chosen), progress=report)
        except RagError as exc:
            gr.Warning(str(exc))
            return f"⚠ {exc}", index_html(chosen)
        skipped = "".join(f"\n- skipped `{s}`: {r}" for s, r in summary.skipped)
        return (
            f"Rebuilt in {summary.seconds:.1f} s: {summary.documents} documents, "
            f"{summary.chunks} passages; added {len(summary.added)}, updated "
            f"{len(summary.updated)}, removed {len(summary.removed)}, unchanged "
            f"{summary.unchanged}.{skipped}"
        ), index_html(chosen)

    def on_load(request: gr.Request) -> tuple:
        collection = config.collection
        return (
            gr.update(choices=names(), value=collection),
            chat_list(user_of(request), collection),
            index_html(engine),
        )

    # -- the layout ---------------------------------------------------------------------

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {TITLE}\nAnswers come only from your documents, with the passages they cite.",
            elem_id="title",
        )
        history = gr.State([])
        shown = gr.State([])
        collection = gr.State(config.collection)
        conversation = gr.State(None)
        turn_of = gr.State({})
        pending = gr.State(None)
        with gr.Row(equal_height=True):
            collection_pick = gr.Dropdown(
                [config.collection],
                value=config.collection,
                label="Collection",
                elem_id="collection",
                scale=2,
            )
            chat_pick = gr.Dropdown(
                [], value=None, label="Saved conversations", elem_id="chats", scale=3
            )
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chatbot",
                height=380,
                latex_delimiters=[],  # "$5 and $10" in news text is money, not maths
                placeholder="Ask a question about your documents.",
                feedback_options=("Like", "Dislike"),
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
                new_button = gr.Button("New chat", scale=1, min_width=120, elem_id="new-chat")
            feedback_note = gr.Markdown(elem_id="feedback-note")
            with gr.Group(visible=False, elem_id="feedback") as feedback_box:
                comment = gr.Textbox(label="Comment (optional)", elem_id="feedback-comment")
                right = gr.Textbox(
                    label="The right answer, in a few words (optional)", elem_id="feedback-right"
                )
                right_source = gr.Dropdown(
                    [(NOT_GIVEN, NOT_GIVEN)],
                    value=NOT_GIVEN,
                    label="The document that holds it (optional)",
                    elem_id="feedback-source",
                )
                save_button = gr.Button("Save feedback", elem_id="feedback-save")
            sources = gr.HTML(
                WAITING,
                css_template=PANEL_CSS,
                elem_id="sources",
                padding=True,
                js_on_load=OPEN_JS,
            )
            document = gr.HTML(
                "",
                css_template=VIEWER_CSS,
                elem_id="viewer",
                padding=True,
                js_on_load=SCROLL_JS,
            )
            with gr.Accordion("Only some documents", open=False, elem_id="filters"):
                gr.Markdown("Search only the documents that match every filter given.")
                with gr.Row():
                    path = gr.Textbox(
                        label="Path or name (glob; several separated by commas)",
                        placeholder="reports/*, *lappo*",
                        elem_id="filter-path",
                    )
                    types = gr.Dropdown(
                        sorted(s.lstrip(".") for s in SUPPORTED),
                        multiselect=True,
                        label="File types",
                        elem_id="filter-types",
                    )
                with gr.Row():
                    since = gr.Textbox(
                        label="Modified on or after", placeholder="YYYY-MM-DD", elem_id="since"
                    )
                    until = gr.Textbox(
                        label="Modified on or before", placeholder="YYYY-MM-DD", elem_id="until"
                    )
            with gr.Accordion("This conversation", open=False, elem_id="conversation-tools"):
                with gr.Row(equal_height=True):
                    title = gr.Textbox(label="Title", elem_id="chat-title", scale=3)
                    rename_button = gr.Button("Rename", elem_id="rename-chat", scale=1)
                    delete_chat_button = gr.Button("Delete", elem_id="delete-chat", scale=1)
                    export_button = gr.Button("Export as Markdown", elem_id="export-chat", scale=1)
                exported = gr.File(label="Exported", visible=False, elem_id="exported")
            with gr.Accordion("Settings", open=False):
                model = gr.Dropdown(
                    models, value=config.model, label="Answer model", elem_id="model"
                )
                k = gr.Slider(1, 10, value=config.k, step=1, label="Passages given to the model")
        with gr.Tab("Documents") as documents_tab:
            where_note = gr.Markdown()
            gr.Markdown(
                f"Add {kinds} files (up to {MAX_UPLOAD_MB} MB each) to the collection's "
                "documents folder, then rebuild its index. Chat keeps answering from the "
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
        with gr.Tab("Collections"):
            gr.Markdown(
                "Each collection is a separate set of documents with its own index; every "
                "conversation belongs to one. Pick one above."
            )
            with gr.Row(equal_height=True):
                new_name = gr.Textbox(
                    label="New collection", placeholder="e.g. work", elem_id="new-collection"
                )
                create_button = gr.Button("Create", elem_id="create-collection")
            delete_button = gr.Button("Delete this collection…", elem_id="delete-collection")
            with gr.Row(visible=False) as confirm_row:
                confirm_button = gr.Button(
                    "Yes, delete it", variant="stop", elem_id="confirm-delete"
                )
                cancel_button = gr.Button("Cancel", elem_id="cancel-delete")
            collection_status = gr.Markdown(elem_id="collection-status")
        with gr.Column(visible=False):  # the inputs and outputs of the /chat API endpoint
            api_message = gr.Textbox(label="message")
            api_history = gr.JSON(label="history")
            api_text = gr.Textbox(label="answer")
            api_sources = gr.JSON(label="sources")
            api_button = gr.Button()

        cleared = [chatbot, sources, history, shown, question, conversation, turn_of, chat_pick]
        cleared.append(title)
        gr.on(
            [question.submit, send.click],
            respond,
            [question, history, shown, k, model, collection, conversation, turn_of]
            + [path, types, since, until],
            [question, chatbot, sources, history, shown, conversation, turn_of, chat_pick]
            + [title],
            api_name="respond",
            api_visibility="undocumented",
            show_progress="minimal",
        )
        new_button.click(new_chat, None, cleared, api_visibility="private")
        chat_pick.input(
            open_chat,
            chat_pick,
            [chatbot, history, shown, conversation, turn_of, sources, title],
            api_name="open_chat",
            api_visibility="undocumented",
        )
        rename_button.click(
            rename_chat, [conversation, title, collection], chat_pick, api_visibility="private"
        )
        delete_chat_button.click(
            delete_chat, [conversation, collection], cleared, api_visibility="private"
        )
        export_button.click(export_chat, conversation, exported, api_visibility="private")
        chatbot.like(like, [turn_of, collection], [feedback_note, feedback_box, pending]).then(
            feedback_form, pending, right_source
        )
        save_button.click(
            save_feedback,
            [pending, comment, right, right_source],
            [feedback_note, feedback_box],
            api_visibility="private",
        )
        sources.click(
            open_document,
            collection,
            document,
            api_name="open_document",
            api_visibility="undocumented",
        )
        collection_pick.input(
            switch,
            collection_pick,
            [*cleared, collection, index_panel, where_note],
            api_visibility="private",
        )
        create_button.click(create, new_name, [collection_pick, collection_status, new_name]).then(
            switch,
            collection_pick,
            [*cleared, collection, index_panel, where_note],
        )
        delete_button.click(ask_delete, collection, [confirm_row, collection_status])
        cancel_button.click(lambda: gr.update(visible=False), None, confirm_row)
        confirm_button.click(
            confirm_delete, collection, [collection_pick, confirm_row, collection_status]
        ).then(
            switch,
            collection_pick,
            [*cleared, collection, index_panel, where_note],
        )
        api_button.click(
            chat_api, [api_message, api_history], [api_text, api_sources], api_name="chat"
        )
        files.upload(
            add_files,
            [files, collection],
            [upload_status, files],
            api_name="add_files",
            api_visibility="undocumented",
        )
        rebuild_button.click(
            rebuild,
            collection,
            [rebuild_status, index_panel],
            concurrency_limit=1,
            concurrency_id="rebuild",
            api_name="rebuild",
            api_visibility="undocumented",
        )
        app.load(on_load, None, [collection_pick, chat_pick, index_panel], api_visibility="private")
        documents_tab.select(
            lambda c: index_html(engine_of(c)), collection, index_panel, api_visibility="private"
        )
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=64)
    return app
