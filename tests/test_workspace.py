"""The workspace from the CLI and Python: collections, saved conversations, feedback exported
as questions for `rag eval`, and the document viewer's refusals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import Answer, Citation, Config, Engine, Quote, RagError, answer, evalsets, search
from rag.cli import main as cli
from rag.workspace import chats, collections, viewer

LAPPO = "004_54fdbde5d22b5a7d.txt"
SMALL = "smollm2-135m"


@pytest.fixture()
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("RAG_DATA_DIR", str(folder))
    return folder


@pytest.fixture()
def outside(tmp_path: Path, seeds_dir: Path) -> Path:
    """Documents kept outside the data folder: the Lappo article and one other."""
    folder = tmp_path / "casefiles"
    folder.mkdir()
    for name in (LAPPO, "000_5865c50748c2dda7.txt"):
        (folder / name).write_bytes((seeds_dir / name).read_bytes())
    return folder


def made_answer(text: str, source: str = LAPPO, start: int = 10, end: int = 60) -> Answer:
    quote = Quote("the answer will be immediate", start, end)
    citation = Citation(1, source, "Title", start, end, "passage text", quotes=(quote,))
    return Answer(text, (citation,), question="q", outcome="answered")


# -- collections ----------------------------------------------------------------------------


def test_a_collection_is_indexed_listed_asked_and_deleted_from_the_cli(
    data: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["index", "--collection", "case-1", str(outside)]) == 0
    assert "2 documents" in capsys.readouterr().out
    assert cli(["collections"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("default\t") and listed[1].startswith("case-1\tindexed\t")
    assert cli(["search", "Lappo", "--collection", "case-1", "--json", "-k", "3"]) == 0
    assert {h["source"] for h in json.loads(capsys.readouterr().out)} <= {
        LAPPO,
        "000_5865c50748c2dda7.txt",
    }
    # The Python API takes the same name; the default collection is today's index.
    assert search("Lappo threatened", k=1, collection="case-1")[0].chunk.source == LAPPO
    assert Config.load(collection="default") == Config.load()
    assert cli(["search", "Lappo", "--collection", "nope"]) == 1
    assert "there is no collection 'nope'" in capsys.readouterr().err
    assert cli(["collections", "delete", "case-1"]) == 1  # not at a terminal: needs --yes
    assert cli(["collections", "delete", "case-1", "--yes"]) == 0
    assert not (data / "collections" / "case-1").exists()
    assert (outside / LAPPO).exists()  # documents indexed from elsewhere are never touched
    assert cli(["collections", "delete", "default", "--yes"]) == 1
    assert "cannot be deleted" in capsys.readouterr().err


def test_collection_names_are_checked(data: Path) -> None:
    config = Config.load()
    for bad in ["../x", "a/b", "", "Über", "-x", "x" * 65]:
        with pytest.raises(RagError, match="cannot name a collection|already"):
            collections.create(config, bad or "default")
    made = collections.create(config, "Work")  # names are lowercase
    assert made.name == "work" and made.corpus == data / "collections" / "work" / "documents"
    assert made.corpus.is_dir() and not made.built
    with pytest.raises(RagError, match="already a collection 'work'"):
        collections.create(config, "work")


def test_an_answer_from_a_collection_cites_its_documents(data: Path, outside: Path) -> None:
    assert cli(["index", "--collection", "case", str(outside)]) == 0
    found = answer("What did Lappo threaten?", collection="case", model=SMALL, max_tokens=48)
    assert found.passages and {h.chunk.source for h in found.passages} <= {
        LAPPO,
        "000_5865c50748c2dda7.txt",
    }
    with pytest.raises(RagError, match="no index|not found|rag index"):
        collections.create(Config.load(), "empty")
        answer("What did Lappo threaten?", collection="empty", model=SMALL)


# -- saved conversations --------------------------------------------------------------------


def test_conversations_are_saved_resumed_renamed_exported_and_deleted(tmp_path: Path) -> None:
    saved = chats.Workspace(tmp_path)
    first = made_answer("He threatened an immediate and cruel answer [1].")
    conversation, turn = saved.add_turn("ana", None, "default", "What did Lappo threaten?", first)
    saved.add_turn("ana", conversation, "default", "And when?", made_answer("In 2023 [1]."))
    listed = saved.conversations("ana", "default")
    assert [(c["title"], c["turns"]) for c in listed] == [("What did Lappo threaten?", 2)]
    assert saved.history("ana", conversation) == [
        {"role": "user", "content": "What did Lappo threaten?"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "And when?"},
        {"role": "assistant", "content": "In 2023 [1]."},
    ]
    found = saved.conversation("ana", conversation)
    assert found["turns"][0]["result"]["citations"][0]["source"] == LAPPO
    saved.rename("ana", conversation, "  Lappo's   threat ")
    assert saved.conversations("ana")[0]["title"] == "Lappo's threat"
    text = saved.markdown("ana", conversation)
    assert text.startswith("# Lappo's threat\n") and "## What did Lappo threaten?" in text
    assert f"`{LAPPO}`" in text and "> the answer will be immediate" in text
    with pytest.raises(RagError, match="cannot be empty"):
        saved.rename("ana", conversation, " ")
    saved.delete("ana", conversation)
    assert saved.conversations("ana") == []
    with pytest.raises(RagError, match="no saved conversation"):
        saved.conversation("ana", conversation)
    assert turn > 0


def test_one_user_never_reaches_another_users_conversations(tmp_path: Path) -> None:
    saved = chats.Workspace(tmp_path)
    mine, turn = saved.add_turn("ana", None, "default", "Ana's question", made_answer("A [1]."))
    assert saved.conversations("bo") == [] and saved.feedback("bo") == []
    for call in (
        lambda: saved.conversation("bo", mine),
        lambda: saved.add_turn("bo", mine, "default", "hijack", made_answer("B [1].")),
        lambda: saved.rename("bo", mine, "mine now"),
        lambda: saved.delete("bo", mine),
        lambda: saved.markdown("bo", mine),
        lambda: saved.rate("bo", turn, "down"),
    ):
        with pytest.raises(RagError, match="no saved"):
            call()
    assert saved.conversation("ana", mine)["title"] == "Ana's question"
    assert len(saved.conversation("ana", mine)["turns"]) == 1


WRITER = """
import sys, time
from rag.types import Answer, Citation
from rag.workspace.chats import Workspace
saved = Workspace(sys.argv[1])
conversation = None
for n in range(100000):
    reply = Answer("answer %d [1]" % n, (Citation(1, "a.txt", "A", 0, 5, "text " * 200),))
    conversation, _ = saved.add_turn("ana", conversation, "default", "question %d" % n, reply)
    print(n, flush=True)
"""


def test_a_kill_while_writing_loses_at_most_the_turn_in_flight(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    done = -1
    began = time.monotonic()
    while done < 30 and time.monotonic() - began < 120:
        done = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)  # mid-way through some later write
    writer.wait(timeout=30)
    assert done >= 30
    db = sqlite3.connect(tmp_path / chats.FILE)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    saved = chats.Workspace(tmp_path)
    (found,) = saved.conversations("ana")
    turns = saved.conversation("ana", found["id"])["turns"]
    # Every turn reported written is there, whole; at most one more (written, not reported).
    assert done + 1 <= len(turns) <= done + 2
    assert [t["question"] for t in turns] == [f"question {n}" for n in range(len(turns))]
    saved.add_turn("ana", found["id"], "default", "after the crash", made_answer("ok [1]"))


# -- feedback -------------------------------------------------------------------------------


def test_feedback_becomes_a_question_file_that_rag_eval_reads(
    data: Path, tmp_path: Path, seeds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = chats.Workspace(Config.load().data_dir)
    conversation, good = saved.add_turn(
        "ana", None, "default", "What did Lappo threaten?", made_answer("Cruel answer [1].")
    )
    _, wrong = saved.add_turn(
        "ana", conversation, "default", "How many troops?", made_answer("60,000 [1].")
    )
    _, vague = saved.add_turn("bo", None, "default", "Who is he?", made_answer("Lappo [1]."))
    refused = Answer("The documents don't say.", question="q", outcome="refused")
    _, nowhere = saved.add_turn("bo", None, "default", "What is Lappo's salary?", refused)
    saved.rate("ana", good, "up", comment="right")
    saved.rate("ana", wrong, "down", "wrong number", "hundreds of thousands", LAPPO)
    saved.rate("bo", vague, "down", "too vague")  # no document named: cannot be a question
    saved.rate("bo", nowhere, "up")
    saved.rate("ana", good, "up", comment="right, and cited")  # a second rating replaces it
    rows = saved.feedback(None)
    assert len(rows) == 4 and rows[0]["comment"] == "right, and cited"
    assert rows[0]["settings"] == {} and rows[0]["answer"] == "Cruel answer [1]."
    with pytest.raises(RagError, match="up or down"):
        saved.rate("ana", good, "meh")

    out = tmp_path / "mine.jsonl"
    assert cli(["feedback", "export", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "3 questions" in err and "'Who is he?'" in err
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_question = {q["question"]: q for q in lines}
    assert by_question["What did Lappo threaten?"]["gold_doc"] == LAPPO
    follow_up = by_question["How many troops?"]
    assert follow_up["must"] == [["hundreds of thousands"]] and follow_up["gold_doc"] == LAPPO
    assert follow_up["history"][0] == {"role": "user", "content": "What did Lappo threaten?"}
    assert by_question["What is Lappo's salary?"]["gold_doc"] is None
    questions = evalsets.load(out).questions  # the format `rag eval` reads
    assert [q.answerable for q in questions] == [True, True, False]
    index = tmp_path / "index"
    Engine(Config.load(index_dir=index)).build([seeds_dir])
    assert cli(["eval", str(out), "--retrieval-only", "--index-dir", str(index)]) == 0
    assert "recall@" in capsys.readouterr().out
    assert cli(["feedback", "export", "--user", "bo", "--rating", "up"]) == 0
    only = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [q["question"] for q in only] == ["What is Lappo's salary?"]


# -- the document viewer --------------------------------------------------------------------


@pytest.fixture()
def indexed(tmp_path: Path, seeds_dir: Path) -> Config:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in (LAPPO, "000_5865c50748c2dda7.txt"):
        (corpus / name).write_bytes((seeds_dir / name).read_bytes())
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2", encoding="utf-8")
    (corpus / "link.txt").symlink_to(secret)  # indexed, but its file is outside the folder
    config = Config.load(corpus=corpus, index_dir=tmp_path / "index")
    Engine(config).build([corpus])
    return config


def test_the_viewer_marks_the_cited_span_and_words(indexed: Config) -> None:
    text = (Path(indexed.corpus) / LAPPO).read_text(encoding="utf-8")
    start = text.index("The head of the border committee")
    words = text.index("immediate and cruel")
    page = viewer.render(indexed, LAPPO, start, start + 400, [(words, words + 19)])
    assert '<mark class="rag-cited" id="rag-cited-start">The head of the border' in page
    assert '<mark class="rag-cited-words">immediate and cruel</mark>' in page
    assert "Top Putin Ally" in page  # the document's title heads it


@pytest.mark.parametrize(
    "source",
    [
        "../secret.txt",
        "../../../../etc/passwd",
        "/etc/passwd",
        "link.txt",  # a symbolic link out of the documents folder
        "%2e%2e/secret.txt",
        "",
        "nope.txt",
    ],
)
def test_the_viewer_refuses_anything_but_the_collections_own_files(
    indexed: Config, source: str
) -> None:
    with pytest.raises(RagError, match="is not a document of the collection"):
        viewer.render(indexed, source, 0, 10)


def test_the_viewer_refuses_a_tampered_manifest_path(indexed: Config) -> None:
    from rag import store

    folder = store.current_folder(Path(indexed.index_dir))
    manifest = json.loads((folder / store.MANIFEST).read_text(encoding="utf-8"))
    manifest["documents"][LAPPO]["path"] = "/etc/passwd"
    (folder / store.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(RagError, match="is not a document of the collection"):
        viewer.render(indexed, LAPPO, 0, 10)


def test_a_pdf_is_shown_as_its_text_with_page_breaks_and_the_cited_page(tmp_path: Path) -> None:
    import io

    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=letter)
    for line in ("First page: the border committee met.", "Second page: the answer is cruel."):
        pdf.drawString(72, 720, line)
        pdf.showPage()
    pdf.save()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "minutes.pdf").write_bytes(buffer.getvalue())
    config = Config.load(corpus=corpus, index_dir=tmp_path / "index")
    Engine(config).build([corpus])
    (hit,) = Engine(config).search("the answer is cruel", k=1)
    start = hit.chunk.original.index("Second page") + hit.chunk.start
    page = viewer.render(config, "minutes.pdf", start, start + 33)
    assert '<div class="rag-page-break">page 2</div>' in page and "page 2 ·" in page
    assert '<mark class="rag-cited" id="rag-cited-start">Second page: the answer is cruel.' in page
