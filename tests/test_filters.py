"""Questions restricted to some documents: path patterns, file types and modification dates,
applied before ranking in dense and lexical retrieval alike."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag import Config, Engine, RagError, filters
from rag.cli import main as cli

LAPPO = "004_54fdbde5d22b5a7d.txt"
OTHERS = ["000_5865c50748c2dda7.txt", "001_170c96ab2ce3f4e4.txt", "002_919d4d391b401e35.txt"]
OLD, NEW = dt.datetime(2021, 3, 1, 12), dt.datetime(2025, 6, 1, 12)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path) -> Path:
    """The seeds in two folders, the Lappo article dated 2021 and the rest 2025."""
    root = tmp_path_factory.mktemp("filters") / "corpus"
    for name in [*OTHERS, "003_420ac862ca752e05.txt"]:
        (root / "news").mkdir(parents=True, exist_ok=True)
        shutil.copy(seeds_dir / name, root / "news" / name)
        os.utime(root / "news" / name, (NEW.timestamp(), NEW.timestamp()))
    (root / "archive").mkdir()
    shutil.copy(seeds_dir / LAPPO, root / "archive" / LAPPO)
    os.utime(root / "archive" / LAPPO, (OLD.timestamp(), OLD.timestamp()))
    (root / "news" / "notes.md").write_text(
        "# Notes\n\nLappo's threats were reported by Newsweek in 2023.\n", encoding="utf-8"
    )
    os.utime(root / "news" / "notes.md", (NEW.timestamp(), NEW.timestamp()))
    return root


def engine_over(corpus: Path, folder: Path, **settings: object) -> Engine:
    engine = Engine(Config.load(corpus=corpus, index_dir=folder, **settings))
    engine.build([corpus])
    return engine


@pytest.fixture(scope="module")
def engine(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_over(corpus, tmp_path_factory.mktemp("filters-index"))


def sources(hits: list) -> set[str]:
    return {h.chunk.source for h in hits}


def test_filters_are_read_from_dicts_strings_and_flags() -> None:
    where = filters.parse({"path": "news/*", "type": ".TXT,md", "since": "2024-01-01"})
    assert where.paths == ("news/*",) and where.types == ("txt", "md")
    assert where.since == dt.date(2024, 1, 1) and where.until is None
    assert filters.parse(["path=a/*", "path=*.md", "until=2024-02-03"]).paths == ("a/*", "*.md")
    assert filters.parse("type=pdf since=2020-01-01").types == ("pdf",)
    assert not filters.parse(None) and not filters.parse({})
    for bad, message in [
        ({"colour": "red"}, "unknown filter colour"),
        (["path"], "not key=value"),
        ({"since": "last week"}, "not a date"),
        ({"since": "2025-01-02", "until": "2025-01-01"}, "nothing could match"),
    ]:
        with pytest.raises(RagError, match=message):
            filters.parse(bad)


def test_a_path_pattern_matches_names_folders_and_is_case_blind() -> None:
    where = filters.parse({"path": "*LAPPO*"})
    assert where.matches("archive/004_lappo.txt", None)
    assert not where.matches("news/000.txt", None)
    assert filters.parse({"path": "archive/"}).matches("archive/x/y.pdf", None)
    assert not filters.parse({"path": "archive/"}).matches("news/archive.txt", None)
    assert filters.parse({"path": "news/*.md"}).matches("news/notes.md", None)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_the_filter_ranks_only_the_chosen_documents_before_taking_k(
    engine: Engine, mode: str
) -> None:
    engine = Engine(engine.config.with_(retrieval=mode))
    question = "What did Lappo threaten Poland with at the Belarus border?"
    unfiltered = engine.search(question, k=3)
    assert f"archive/{LAPPO}" in sources(unfiltered)
    # Every passage of the other documents is ranked: k of them come back, not what is left
    # of the best k overall once the Lappo article is dropped.
    hits = engine.search(question, k=6, where={"path": "news/*"})
    assert len(hits) == 6 and all(s.startswith("news/") for s in sources(hits))
    only = engine.search(question, k=4, where={"path": f"*{LAPPO}"})
    assert sources(only) == {f"archive/{LAPPO}"}
    assert len(only) == min(4, engine.index.manifest["documents"][f"archive/{LAPPO}"]["count"])


def test_a_lexical_filter_keeps_bm25_scores_of_the_chosen_documents(engine: Engine) -> None:
    index = engine.index
    allowed = filters.passage_ids(filters.parse({"type": "md"}), index.manifest)
    every = dict(index.words("Lappo threats Newsweek", 50))
    kept = index.words("Lappo threats Newsweek", 50, allowed)
    assert kept and {i for i, _ in kept} <= set(allowed.tolist())
    assert all(abs(every[i] - s) < 1e-5 for i, s in kept)


def test_type_and_date_filters(engine: Engine) -> None:
    question = "Lappo threats"
    assert sources(engine.search(question, k=5, where={"type": "md"})) == {"news/notes.md"}
    old = engine.search(question, k=5, where={"until": "2022-12-31"})
    assert sources(old) == {f"archive/{LAPPO}"}
    new = engine.search(question, k=8, where={"since": "2025-01-01", "type": "txt"})
    assert new and all(s.startswith("news/") and s.endswith(".txt") for s in sources(new))
    day = NEW.date().isoformat()  # both ends of a one-day range are included
    assert engine.search(question, k=2, where={"since": day, "until": day})
    with pytest.raises(RagError, match=r"no document of the index matches the filter type=pdf"):
        engine.search(question, where={"type": "pdf"})


def test_the_modification_date_is_recorded_and_kept_up_to_date(
    corpus: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    engine = engine_over(copy, tmp_path / "index")
    documents = engine.index.manifest["documents"]
    assert documents[f"archive/{LAPPO}"]["modified"] == pytest.approx(OLD.timestamp())
    later = dt.datetime(2026, 1, 5).timestamp()
    os.utime(copy / "archive" / LAPPO, (later, later))  # touched: same text, new date
    engine.build([copy])
    assert sources(engine.search("Lappo", k=9, where={"since": "2026-01-01"})) == {
        f"archive/{LAPPO}"
    }


def test_the_filtered_vectors_are_the_stored_ones(engine: Engine) -> None:
    index = engine.index
    ids = np.array([0, 1, 2, 7, 9, 10], dtype=np.int64)
    got = index.reconstruct(ids)
    assert np.allclose(got, np.vstack([index.vectors.reconstruct(int(i)) for i in ids]))


def test_an_answer_restricted_to_a_folder_cites_only_it(corpus: Path, tmp_path: Path) -> None:
    engine = engine_over(corpus, tmp_path / "index", model="smollm2-135m", max_tokens=48)
    answer = engine.answer("What did Lappo threaten?", where={"path": "news/*"})
    assert all(not h.chunk.source.startswith("archive/") for h in answer.passages)
    assert all(c.source.startswith("news/") for c in answer.citations)


def test_the_where_flag_of_search_and_ask(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    index = str(engine.config.index_dir)
    assert cli(["search", "Lappo", "--index-dir", index, "--where", "path=archive/", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and {h["source"] for h in hits} == {f"archive/{LAPPO}"}
    assert cli(["search", "Lappo", "--index-dir", index, "--where", "type=pdf"]) == 1
    assert "matches the filter type=pdf" in capsys.readouterr().err
    assert cli(["ask", "Lappo?", "--index-dir", index, "--where", "since=someday"]) == 1
    assert "since='someday' is not a date" in capsys.readouterr().err
