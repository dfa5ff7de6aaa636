"""The chat page over HTTP: a real server on 127.0.0.1, the real small model, gradio_client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import scans
from conftest import NO_FILTER, serve_page
from conftest import SMALL_MODEL as MODEL
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_tables import ROADS_2023, budget_docx

from rag import Answer, Chunk, Citation, Hit, Quote, RagError, web

# Gradio's queue statistics call pandas in a way pandas 3 deprecates; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

LAPPO = "004_54fdbde5d22b5a7d.txt"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(engine, url) of the page over a fresh index of a copy of the seeds."""
    root = tmp_path_factory.mktemp("web")
    with serve_page(root, ocr_cache=root / "ocr-cache") as (engine, address):
        assert address.startswith("http://127.0.0.1:")
        yield engine, address


def ask_page(client: Client, question: str) -> tuple[list[dict], str]:
    """One turn through the page's own chat handler: (chat messages shown, sources panel)."""
    _, shown, sources, *_ = client.predict(question, 4, MODEL, *NO_FILTER, api_name="/respond")
    return shown, sources


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return str(content)


def test_chat_endpoint_streams_an_answer_and_its_sources(served: tuple) -> None:
    _, url = served
    job = Client(url, verbose=False).submit("What did Lappo threaten?", api_name="/chat")
    updates = list(job)
    text, sources = job.outputs()[-1]
    assert len(updates) >= 2  # pieces arrived before the final answer
    assert isinstance(text, str) and text.strip()
    assert isinstance(sources, list)
    seeds = {p.name for p in Path(served[0].config.corpus).iterdir()}
    for source in sources:
        assert source["source"] in seeds
        assert source["text"] and source["number"] >= 1


def test_chat_endpoint_answers_with_prior_turns_given(served: tuple) -> None:
    _, url = served
    history = [
        {"role": "user", "content": "What did Lappo threaten?"},
        {"role": "assistant", "content": "An immediate and cruel answer [1]."},
    ]
    text, sources = Client(url, verbose=False).predict(
        "What did he say would happen?", history, api_name="/chat"
    )
    assert text.strip() and isinstance(sources, list)


def test_two_sessions_at_once_keep_their_own_history(served: tuple) -> None:
    _, url = served
    questions = {
        "a": ["What did Lappo threaten?", "Who heads the border committee of Belarus?"],
        "b": ["What will Russian troops do if Belarus is attacked?", "When were the drills?"],
    }
    clients = {name: Client(url, verbose=False) for name in questions}
    both = threading.Barrier(2)
    results: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def chat(name: str) -> None:
        try:
            for question in questions[name]:
                both.wait(timeout=300)  # the two sessions ask each turn at the same time
                results[name] = ask_page(clients[name], question)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(name,)) for name in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for name, asked in questions.items():
        shown, sources = results[name]
        assert [m["role"] for m in shown] == ["user", "assistant"] * 2
        assert [text_of(m) for m in shown if m["role"] == "user"] == asked
        assert all(text_of(m).strip() for m in shown)
        assert 'data-state="done"' in sources


def test_empty_question_gives_a_readable_message(served: tuple) -> None:
    _, url = served
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="the question is empty") as caught:
        client.predict("   ", api_name="/chat")
    assert "Traceback" not in str(caught.value)
    shown, sources = ask_page(client, "")
    assert "the question is empty" in text_of(shown[-1])
    assert "the question is empty" in sources and "Traceback" not in sources


def test_uploaded_document_is_searchable_after_a_rebuild_while_chat_goes_on(
    served: tuple, tmp_path: Path
) -> None:
    engine, url = served
    note = tmp_path / "Zorblat notes.txt"
    note.write_text(
        "Zorblat harvest report\n\nThe zorblat harvest in Vennmark doubled this year, "
        "the growers' guild said on Tuesday.\n",
        encoding="utf-8",
    )
    client = Client(url, verbose=False)
    status, _ = client.predict([handle_file(note)], api_name="/add_files")
    assert "Added 1 file" in status
    assert (Path(engine.config.corpus) / "Zorblat notes.txt").is_file()

    rebuild = client.submit(api_name="/rebuild")
    text, _ = Client(url, verbose=False).predict("What did Lappo threaten?", api_name="/chat")
    assert text.strip()  # answered from the old or the new index, never blocked
    summary, indexed = rebuild.result(timeout=300)
    assert "added 1" in summary
    assert "Zorblat notes.txt" in indexed and LAPPO in indexed
    hits = engine.search("zorblat harvest in Vennmark", k=1)
    assert hits[0].chunk.source == "Zorblat notes.txt"


def test_uploaded_scans_images_and_tables_are_read_and_found(served: tuple, tmp_path: Path) -> None:
    engine, url = served
    scan = scans.pages("Ferry notice\n\nThe Klaipeda ferry to Kiel leaves from berth 9 at dawn.")
    memo = scans.pages("Depot memo\n\nThe Marsh Lane tram depot reopens on 12 June after repairs.")
    (tmp_path / "ferry-scan.pdf").write_bytes(scans.pdf([image for image, _ in scan]))
    (tmp_path / "depot memo.png").write_bytes(scans.png(memo[0][0]))
    (tmp_path / "budget.docx").write_bytes(budget_docx())
    client = Client(url, verbose=False)
    files = [handle_file(tmp_path / n) for n in ("ferry-scan.pdf", "depot memo.png", "budget.docx")]
    status, _ = client.predict(files, api_name="/add_files")
    assert "Added 3 file(s)" in status, status
    summary, indexed = client.predict(api_name="/rebuild")
    assert "added 3" in summary, summary
    assert "ferry-scan.pdf" in indexed and "depot memo.png" in indexed
    hit = engine.search("Which berth does the ferry to Kiel leave from?", k=1)[0].chunk
    assert hit.source == "ferry-scan.pdf" and hit.page == 1 and "berth 9" in hit.original
    hit = engine.search("When does the tram depot reopen?", k=1)[0].chunk
    assert hit.source == "depot memo.png" and "12 June" in hit.original
    hit = engine.search("What was the budget for Roads in 2023?", k=1)[0].chunk
    assert hit.source == "budget.docx" and ROADS_2023 in hit.text.splitlines()


# -- what the sources panel shows ------------------------------------------------------------

PASSAGE = Chunk(
    7,
    LAPPO,
    "Top Putin Ally Threatens ‘Cruel’ Attacks",
    492,
    1014,
    "the answer will be immediate and cruel",
    "“The answer will be immediate and cruel,” <b>Lappo</b> said.",
)


def test_cited_passages_are_listed_escaped_with_the_cited_words_marked() -> None:
    cited = Citation(1, LAPPO, PASSAGE.title, 492, 1014, PASSAGE.original, page=3)
    answer = Answer("Lappo said the answer will be immediate and cruel [1].", (cited,))
    panel = web.sources_html(answer, [Hit(PASSAGE, 0.5)])
    assert "[1]" in panel and LAPPO in panel and "page 3" in panel
    assert "“<mark>The answer will be immediate and cruel</mark>,”" in panel
    assert "&lt;b&gt;Lappo&lt;/b&gt;" in panel and "<b>Lappo</b>" not in panel
    assert "<details" in panel and "Passages searched (1)" in panel
    assert "not supported" not in panel


def test_a_refusal_is_a_calm_note_and_an_unsupported_answer_a_warning() -> None:
    refusal = web.sources_html(Answer("The documents don't say.", supported=False, refused=True))
    assert "The documents don't say." in refusal and "not supported" not in refusal
    unsupported = web.sources_html(Answer("Lappo threatened Poland.", supported=False))
    assert "not supported by a cited passage" in unsupported


def test_each_citation_quotes_its_backing_sentence_with_the_answers_words_marked() -> None:
    sentence = "“The answer will be immediate and cruel,” <b>Lappo</b> said."
    marks = tuple((sentence.index(w), sentence.index(w) + len(w)) for w in ("immediate", "cruel"))
    quote = Quote(sentence, 492, 492 + len(sentence), marks)
    cited = Citation(1, LAPPO, PASSAGE.title, 492, 1014, PASSAGE.original, quotes=(quote,))
    panel = web.sources_html(Answer("It will be immediate and cruel [1].", (cited,)))
    assert '<blockquote class="rag-support">' in panel
    assert "<mark>immediate</mark> and <mark>cruel</mark>" in panel
    assert "&lt;b&gt;Lappo&lt;/b&gt;" in panel and "<b>Lappo</b>" not in panel


def test_a_withheld_answer_says_why_it_is_not_shown() -> None:
    withheld = Answer(
        "The documents don't say.",
        supported=False,
        refused=True,
        outcome="withheld",
        reason="the cited passages never state '2015'",
    )
    panel = web.sources_html(withheld)
    assert "not shown" in panel and "never state &#x27;2015&#x27;" in panel


def test_another_answer_model_gets_its_own_engine_over_the_same_index(served: tuple) -> None:
    engine, _ = served
    assert web.engine_for(engine, MODEL) is engine
    other = web.engine_for(engine, "qwen2.5-coder-1.5b")
    assert other is not engine and other.config.model == "qwen2.5-coder-1.5b"
    assert other.config.index_dir == engine.config.index_dir
    assert web.engine_for(engine, "qwen2.5-coder-1.5b") is other


# -- uploads are named safely ----------------------------------------------------------------


def test_path_parts_are_dropped_from_upload_names(tmp_path: Path) -> None:
    assert web.safe_name("../../etc/passwd") == "passwd"
    assert web.safe_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    target = web.upload_target(tmp_path, "../../etc/passwd.txt")
    assert target == tmp_path.resolve() / "passwd.txt"


def test_names_that_would_hide_or_escape_are_refused_or_made_visible(tmp_path: Path) -> None:
    assert web.safe_name(".hidden") == "hidden"
    assert web.safe_name(".hidden.md") == "hidden.md"
    assert web.safe_name("notes..txt") == "notes.txt"
    for name in ["..", "...", "/", "", "../..", "\x00"]:
        with pytest.raises(RagError, match="no usable characters"):
            web.safe_name(name)


def test_unicode_letters_are_kept_and_unsafe_characters_replaced() -> None:
    assert web.safe_name("Łódź – 東京 notes.txt") == "Łódź _ 東京 notes.txt"
    assert web.safe_name("a<b>|c?*.md") == "a_b__c__.md"
    assert web.safe_name("evil\x00name\n.txt") == "evilname.txt"
    long = web.safe_name("x" * 300 + ".pdf")
    assert len(long) <= web.MAX_NAME_CHARS and long.endswith(".pdf")


def test_only_document_types_are_accepted(tmp_path: Path) -> None:
    assert web.upload_target(tmp_path, "Report.PDF").name == "Report.PDF"
    for name in ["../../etc/passwd", "run.sh", "archive.tar.gz"]:
        with pytest.raises(RagError, match="not a document this app reads"):
            web.upload_target(tmp_path, name)


def test_files_over_the_size_limit_are_refused_with_their_size(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # sparse: no disk used
        f.truncate(web.MAX_UPLOAD_MB * 1024 * 1024 + 1)
    corpus = tmp_path / "corpus"
    with pytest.raises(RagError, match=f"50.0 MB; files up to {web.MAX_UPLOAD_MB} MB"):
        web.save_upload(corpus, big)
    assert not corpus.exists() or not any(corpus.iterdir())


def test_a_saved_upload_replaces_a_same_named_document(tmp_path: Path) -> None:
    upload = tmp_path / "new.md"
    upload.write_text("# Second version\n", encoding="utf-8")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "new.md").write_text("# First version\n", encoding="utf-8")
    saved = web.save_upload(corpus, upload, name="../new.md")
    assert saved == corpus.resolve() / "new.md"
    assert saved.read_text(encoding="utf-8") == "# Second version\n"
    assert sorted(p.name for p in corpus.iterdir()) == ["new.md"]  # no partial copy left


def test_login_comes_from_rag_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_AUTH", "ana:s3cret:with:colons")
    assert web.auth_from_env() == ("ana", "s3cret:with:colons")
    monkeypatch.setenv("RAG_AUTH", "no-password")
    with pytest.raises(RagError, match="RAG_AUTH"):
        web.auth_from_env()
