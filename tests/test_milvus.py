"""The Milvus store, with real Milvus Lite: search and hybrid search as with FAISS, filters, the
rebuild that switches an alias, a killed rebuild, and `rag eval` giving the same figures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag import Config, Engine, RagError
from rag.cli import main as cli
from rag.cluster import milvus

LAPPO = "004_54fdbde5d22b5a7d.txt"
QUESTIONS = [
    "What did Lappo threaten?",
    "railway sabotage 80 times",
    "Babich",
    "How many NATO troops are deployed near Belarus?",
    "Wagner fighters in Belarus",
]
HELD_REBUILD = str(Path(__file__).resolve().parent / "held_rebuild.py")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path) -> tuple[Config, Config]:
    """The seeds in Milvus Lite and in a FAISS folder, built by the same command."""
    root = tmp_path_factory.mktemp("milvus")
    lite = Config.load(store=f"milvus:{root / 'seeds.db'}")
    faiss = Config.load(index_dir=root / "faiss")
    assert cli(["index", str(seeds_dir), "--store", lite.store]) == 0
    assert cli(["index", str(seeds_dir), "--index-dir", str(faiss.index_dir)]) == 0
    return lite, faiss


def ranked(config: Config, question: str, mode: str, where: object = None) -> list[tuple]:
    hits = Engine(config.with_(retrieval=mode)).search(question, 6, where)
    return [(h.chunk.source, h.chunk.start, round(h.score, 4)) for h in hits]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_milvus_ranks_the_passages_faiss_ranks(stores: tuple[Config, Config], mode: str) -> None:
    lite, faiss = stores
    for question in QUESTIONS:
        assert ranked(lite, question, mode) == ranked(faiss, question, mode), question
    top = Engine(lite.with_(retrieval=mode)).search("What did Lappo threaten?", 1)[0]
    assert top.chunk.source == LAPPO
    assert mode == "lexical" or "immediate and cruel" in top.chunk.original


def test_milvus_uses_its_own_full_text_search(stores: tuple[Config, Config]) -> None:
    index = Engine(stores[0]).index
    assert index.full_text and index.manifest["index_type"] == "milvus"
    # "Babich" (typed without the accent) finds "Bábich" through the folded words field.
    (best, _), *_ = index.words("Babich", 3)
    assert "Bábich" in index.chunks([best])[0].text
    assert "babich" in index.vocabulary()


def test_without_full_text_search_the_local_bm25_serves_beside_milvus(
    stores: tuple[Config, Config], tmp_path: Path, seeds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment without Milvus's BM25 function (before 2.5), as far as our code can tell.
    monkeypatch.setattr(milvus.Store, "FULL_TEXT", (False,))
    old = Config.load(store=f"milvus:{tmp_path / 'old.db'}")
    Engine(old).build([seeds_dir])
    assert not Engine(old).index.full_text
    for mode in ("lexical", "hybrid"):
        for question in QUESTIONS:
            assert ranked(old, question, mode) == ranked(stores[1], question, mode), question


def test_filters_apply_in_milvus_as_in_faiss(stores: tuple[Config, Config]) -> None:
    lite, faiss = stores
    where = {"path": "00[0-3]*"}
    for mode in ("dense", "hybrid"):
        got = ranked(lite, "What did Lappo threaten?", mode, where)
        assert got == ranked(faiss, "What did Lappo threaten?", mode, where)
        assert got and all(source != LAPPO for source, *_ in got)


def test_eval_gives_the_same_retrieval_figures_from_both_stores(
    stores: tuple[Config, Config], tmp_path: Path
) -> None:
    lite, faiss = stores
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {"id": f"q{n}", "question": q, "history": [], "gold_doc": LAPPO, "must": [["x"]]}
            )
            + "\n"  # fmt: skip
            for n, q in enumerate(QUESTIONS)
        ),
        "utf-8",
    )
    figures = []
    for option in (["--store", lite.store], ["--index-dir", str(faiss.index_dir)]):
        out = tmp_path / "report.json"
        assert cli(["eval", str(questions), "--retrieval-only", "--out", str(out), *option]) == 0
        report = json.loads(out.read_text("utf-8"))
        figures.append({k: v for k, v in report["overall"].items() if "_s_" not in k})
    assert figures[0] == figures[1] and figures[0]["questions"] == len(QUESTIONS)


def test_a_rebuild_switches_the_alias_and_an_open_engine_follows(
    tmp_path: Path, corpus: Path
) -> None:
    config = Config.load(store=f"milvus:{tmp_path / 'r.db'}")
    engine = Engine(config)
    engine.build([corpus])
    where = milvus.Store(config.store)
    first = where.live()
    assert engine.search("zeppelins", 1)[0].chunk.source != "extra.md"

    (corpus / "extra.md").write_text("# Extra\n\nThe extra document mentions zeppelins.\n", "utf-8")
    summary = engine.build([corpus])
    assert summary.added == ("extra.md",) and summary.embedded == 1
    second = where.live()
    assert second != first
    assert engine.search("zeppelins", 1)[0].chunk.source == "extra.md"
    assert set(where.versions()) == {first, second}  # the replaced one stays for open readers

    (corpus / "extra.md").unlink()
    assert engine.build([corpus]).removed == ("extra.md",)
    assert set(where.versions()) == {second, where.live()}
    assert engine.index.size == summary.chunks - 1


def test_killing_a_milvus_rebuild_before_the_switch_leaves_the_live_version(
    tmp_path: Path, corpus: Path
) -> None:
    uri = f"milvus:{tmp_path / 'k.db'}"
    # Every step in its own process: a Milvus Lite file is opened by one process at a time.
    run = [sys.executable, "-m", "rag.cli", "index", str(corpus), "--store", uri]
    subprocess.run(run, check=True, capture_output=True, timeout=300)
    (corpus / "extra.md").write_text("# Extra\n\nThe extra document mentions zeppelins.\n", "utf-8")
    held = [sys.executable, HELD_REBUILD, "swap", "index", str(corpus), "--store", uri]
    proc = subprocess.Popen(held, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    line = ""
    while time.monotonic() < deadline and "paused at swap" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the rebuild ended before reaching the switch"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    check = (
        "import sys; from rag.cluster import milvus; s = milvus.Store(sys.argv[1]); "
        "print(s.live(), len(s.versions()), s.load().size)"
    )
    out = _until_free([sys.executable, "-c", check, uri])
    live, versions, size = out.split()
    assert versions == "2" and size == "33"  # the half-done version is there, not live

    out = _until_free(run)
    assert "added 1" in out
    out = _until_free([sys.executable, "-c", check, uri])
    assert out.split()[1:] == ["2", "34"] and out.split()[0] != live


def _until_free(command: list[str]) -> str:
    """Run a command on the Lite file once the killed process's Milvus server has let it go."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr[-2000:]
            return done.stdout
        time.sleep(2)


def test_store_addresses_are_checked() -> None:
    assert milvus.parse("milvus://db.example:19530/team") == ("http://db.example:19530", "team")
    uri, name = milvus.parse("milvus:/tmp/x.db")
    assert uri == "/tmp/x.db" and name == milvus.DEFAULT_NAME
    with pytest.raises(RagError, match="ends in .db|ending in .db"):
        milvus.parse("milvus:/tmp/x.sqlite")
    with pytest.raises(RagError, match="unknown store"):
        milvus.parse("postgres://x")
    with pytest.raises(RagError, match="cannot name"):
        milvus.parse("milvus://h:1/bad-name")


def test_milvus_vectors_are_the_ones_built(stores: tuple[Config, Config]) -> None:
    lite, faiss = stores
    a, b = Engine(lite).index, Engine(faiss).index
    ids = list(range(b.size))
    assert np.allclose(a.reconstruct(ids), b.reconstruct(ids), atol=1e-6)
    assert [c.text for c in a.all_chunks()] == [c.text for c in b.all_chunks()]


def test_a_second_milvus_rebuild_at_the_same_time_is_refused(corpus: Path, tmp_path: Path) -> None:
    from rag.errors import IndexBusy

    config = Config.load(store=f"milvus:{tmp_path / 'busy.db'}")
    with milvus.Store(config.store).lock(), pytest.raises(IndexBusy, match="another rebuild"):
        Engine(config).build([corpus])
