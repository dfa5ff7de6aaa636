"""Building, updating, searching and protecting an index of real files with the real model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import Config, EmptyCorpus, Engine, IndexBusy, IndexCorrupt, IndexNotFound, load, store
from rag.cli import main as cli

LAPPO = "004_54fdbde5d22b5a7d.txt"
CYRILLIC = "003_420ac862ca752e05.txt"


def engine_for(index_dir: Path) -> Engine:
    return Engine(Config.load(index_dir=index_dir))


@pytest.fixture(scope="module")
def seeds_index(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path) -> Path:
    index_dir = tmp_path_factory.mktemp("seeds-index")
    assert cli(["index", str(seeds_dir), "--index-dir", str(index_dir)]) == 0
    return index_dir


def test_lappo_question_ranks_the_lappo_passage_first(seeds_index: Path) -> None:
    hits = engine_for(seeds_index).search("What did Lappo threaten?", k=5)
    assert hits[0].chunk.source == LAPPO
    assert "immediate and cruel" in hits[0].chunk.original


def test_railway_sabotage_finds_the_article_written_with_cyrillic_letters(
    seeds_index: Path,
) -> None:
    hits = engine_for(seeds_index).search("railway sabotage 80 times", k=5)
    assert hits[0].chunk.source == CYRILLIC
    # The passage keeps the words as written (with U+0430) for display, cleaned for search.
    assert "\u0430" in hits[0].chunk.original
    assert "railway" in hits[0].chunk.text


def test_a_name_typed_without_its_accent_finds_the_passage_that_has_it(
    seeds_index: Path,
) -> None:
    engine = engine_for(seeds_index)
    ids = [i for i, _ in engine.index.words("Babich", 3)]
    assert ids and "Bábich" in engine.index.chunks(ids[:1])[0].text


def test_an_index_whose_lexical_part_predates_folding_is_refolded_when_opened(
    corpus: Path, tmp_path: Path
) -> None:
    from rag import lexical

    engine = engine_for(tmp_path / "index")
    engine.build([corpus])
    folder = engine.index.folder / lexical.FOLDER
    # What an index written before accents were folded holds: no version file, and the
    # accented word as its own term.
    (folder / "rag_lexical.json").unlink()
    assert lexical.saved_version(folder) == 1
    fresh = engine_for(tmp_path / "index")
    vocabulary = fresh.index.vocabulary()
    assert "babich" in vocabulary and "bábich" not in vocabulary


def test_search_command_prints_ranked_passages(seeds_index: Path, capsys) -> None:
    assert (
        cli(["search", "What did Lappo threaten?", "-k", "3", "--index-dir", str(seeds_index)]) == 0
    )
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("1. [") and LAPPO in first


def test_passages_fit_the_embedding_model_and_map_back_to_the_file(seeds_index: Path) -> None:
    index = load(seeds_index)
    from rag import embed

    embedder = embed.load(index.manifest["embed_model"])
    chunks = list(index.all_chunks())
    assert len(chunks) == index.size > 5
    sizes = embedder.count_tokens([c.text for c in chunks])
    assert max(sizes) <= embedder.text_limit
    for c in chunks:
        original = (Path(index.manifest["base"]) / c.source).read_text(encoding="utf-8")
        assert original[c.start : c.end] == c.original
    manifest = index.manifest
    assert manifest["dim"] == 384 and manifest["embed_model"] == "all-MiniLM-L6-v2"
    assert set(manifest["documents"]) == {p.name for p in Path(manifest["base"]).glob("*.txt")}
    assert all(len(d["sha256"]) == 64 for d in manifest["documents"].values())


def test_update_embeds_only_the_changed_document_and_drops_deleted_ones(
    corpus: Path, tmp_path: Path
) -> None:
    engine = engine_for(tmp_path / "index")
    first = engine.build([corpus])
    assert first.documents == 5 and first.embedded == first.chunks

    again = engine.build([corpus])
    assert again.embedded == 0 and again.unchanged == 5

    changed = corpus / LAPPO
    changed.write_text(changed.read_text(encoding="utf-8") + "\nA new closing line.\n", "utf-8")
    update = engine.build([corpus])
    lappo_chunks = sum(1 for c in load(tmp_path / "index").all_chunks() if c.source == LAPPO)
    assert update.updated == (LAPPO,)
    assert update.embedded == lappo_chunks
    assert update.unchanged == 4

    (corpus / CYRILLIC).unlink()
    removal = engine.build([corpus])
    assert removal.removed == (CYRILLIC,) and removal.embedded == 0
    index = load(tmp_path / "index")
    assert all(c.source != CYRILLIC for c in index.all_chunks())
    assert engine.search("railway sabotage 80 times", k=3)[0].chunk.source != CYRILLIC


def test_changing_chunk_settings_forces_a_full_rebuild(corpus: Path, tmp_path: Path) -> None:
    Engine(Config.load(index_dir=tmp_path / "i")).build([corpus])
    summary = Engine(Config.load(index_dir=tmp_path / "i", chunk_tokens=120)).build([corpus])
    assert summary.full and summary.embedded == summary.chunks


def test_bad_files_are_skipped_with_a_reason(corpus: Path, tmp_path: Path) -> None:
    (corpus / "junk.txt").write_bytes(os.urandom(4000))
    (corpus / "empty.md").write_bytes(b"")
    summary = engine_for(tmp_path / "index").build([corpus])
    reasons = dict(summary.skipped)
    assert set(reasons) == {"junk.txt", "empty.md"}
    assert all(reasons.values())
    assert summary.documents == 5


def test_an_empty_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyCorpus):
        engine_for(tmp_path / "index").build([tmp_path / "empty"])
    code = cli(["index", str(tmp_path / "empty"), "--index-dir", str(tmp_path / "index")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: no readable documents") and "Traceback" not in err


def test_a_missing_index_says_what_to_run(tmp_path: Path, capsys) -> None:
    with pytest.raises(IndexNotFound):
        load(tmp_path / "nothing")
    assert cli(["search", "anything", "--index-dir", str(tmp_path / "nothing")]) == 1
    assert "rag index" in capsys.readouterr().err


def test_a_truncated_vector_file_is_reported_as_corrupt(corpus: Path, tmp_path: Path) -> None:
    engine_for(tmp_path / "index").build([corpus])
    folder = store.current_folder(tmp_path / "index")
    vectors = folder / store.VECTORS
    vectors.write_bytes(vectors.read_bytes()[:1000])
    with pytest.raises(IndexCorrupt, match="--full"):
        load(tmp_path / "index")
    # A rebuild repairs it: the damaged version is replaced fully.
    summary = engine_for(tmp_path / "index").build([corpus])
    assert summary.full and load(tmp_path / "index").size == summary.chunks


def test_a_second_rebuild_at_the_same_time_is_refused(corpus: Path, tmp_path: Path) -> None:
    with store.rebuild_lock(tmp_path / "index"), pytest.raises(IndexBusy):
        engine_for(tmp_path / "index").build([corpus])


def _start_build(corpus: Path, index_dir: Path, pause: str) -> subprocess.Popen:
    """`rag index` in its own process, held at `pause` (see tests/held_rebuild.py)."""
    held = Path(__file__).resolve().parent / "held_rebuild.py"
    return subprocess.Popen(
        [sys.executable, str(held), pause, "index", str(corpus), "--index-dir", str(index_dir)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("pause", ["embedding", "writing", "swap"])
def test_killing_a_rebuild_leaves_the_previous_index_whole(
    corpus: Path, tmp_path: Path, pause: str
) -> None:
    index_dir = tmp_path / "index"
    engine_for(index_dir).build([corpus])
    before = load(index_dir).version
    (corpus / "extra.md").write_text("# Extra\n\nThe extra document mentions zeppelins.\n", "utf-8")

    proc = _start_build(corpus, index_dir, pause)
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline and f"paused at {pause}" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the rebuild ended before reaching the fault point"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    index = load(index_dir)
    assert index.version == before
    assert engine_for(index_dir).search("What did Lappo threaten?", k=1)[0].chunk.source == LAPPO

    summary = engine_for(index_dir).build([corpus])
    assert summary.added == ("extra.md",)
    live = store.current_folder(index_dir).name
    leftovers = {p.name for p in index_dir.iterdir()} - {live, store.CURRENT, ".lock"}
    assert leftovers == set()


def test_watch_updates_the_index_when_a_file_appears(corpus: Path, tmp_path: Path) -> None:
    import threading

    from rag.watch import watch

    engine = engine_for(tmp_path / "index")
    engine.build([corpus])
    stop = threading.Event()
    updates = []

    def on_update(summary) -> None:  # noqa: ANN001
        updates.append(summary)
        stop.set()

    thread = threading.Thread(
        target=watch, args=(engine, [corpus], on_update, 300, stop), daemon=True
    )
    thread.start()
    time.sleep(1.0)  # let the watcher start before the change
    (corpus / "zeppelin.md").write_text("# Airships\n\nThe zeppelin landed in Minsk.\n", "utf-8")
    thread.join(timeout=90)
    stop.set()
    assert updates and updates[0].added == ("zeppelin.md",)
    assert engine.search("zeppelin landed", k=1)[0].chunk.source == "zeppelin.md"
