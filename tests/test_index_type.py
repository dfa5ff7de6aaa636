"""The index type setting: exact flat search, approximate IVF and HNSW, and "auto" by size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag import Config, Engine, RagError, load, store
from rag.types import Chunk

LAPPO = "004_54fdbde5d22b5a7d.txt"


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def version(vectors: np.ndarray) -> store.Version:
    chunks = [
        Chunk(i, f"doc{i // 10}.txt", "t", 0, 1, f"passage {i}", f"passage {i}")
        for i in range(len(vectors))
    ]
    return store.Version({"documents": {}}, chunks, vectors)


def test_auto_is_exact_below_the_threshold_and_ivf_above() -> None:
    assert store.index_type_for("auto", 0) == "flat"
    assert store.index_type_for("auto", store.APPROXIMATE_FROM - 1) == "flat"
    assert store.index_type_for("auto", store.APPROXIMATE_FROM) == "ivf"
    assert store.index_type_for("hnsw", 10) == "hnsw"
    assert store.index_type_for("ivf", 10) == "flat"  # too few passages to learn lists from
    with pytest.raises(RagError, match="unknown index type 'annoy'"):
        store.index_type_for("annoy", 10)


def test_index_type_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config.load().index_type == "auto"
    monkeypatch.setenv("RAG_INDEX_TYPE", "hnsw")
    assert Config.load().index_type == "hnsw"


def test_ivf_index_round_trips_and_finds_stored_vectors(tmp_path: Path) -> None:
    vectors = unit_rows(3000)
    store.write(tmp_path, version(vectors), index_type="ivf")
    index = load(tmp_path)
    assert index.manifest["index_type"] == "ivf" and index.manifest["index_type_setting"] == "ivf"
    assert index.manifest["index_params"]["nlist"] == store.ivf_lists(3000)
    assert type(index.vectors).__name__ == "IndexIVFFlat"
    for i in (0, 1234, 2999):
        assert index.search(vectors[i : i + 1], 3)[0][0] == i
    np.testing.assert_allclose(index.reconstruct([5, 6, 7]), vectors[5:8])
    np.testing.assert_allclose(index.reconstruct([9, 2]), vectors[[9, 2]])
    assert index.chunks([1234])[0].text == "passage 1234"
    index.close()


def test_an_ivf_update_reuses_the_learned_lists(tmp_path: Path) -> None:
    store.write(tmp_path, version(unit_rows(3000)), index_type="ivf")
    old = load(tmp_path)
    store.write(tmp_path, version(unit_rows(3300, seed=1)), index_type="ivf", previous=old)
    new = load(tmp_path)
    assert new.size == 3300
    lists = [store.faiss().extract_index_ivf(i.vectors).quantizer for i in (old, new)]
    np.testing.assert_array_equal(lists[0].reconstruct_n(0, 10), lists[1].reconstruct_n(0, 10))
    old.close()
    new.close()


def test_hnsw_setting_builds_an_hnsw_index_that_answers_like_flat(
    corpus: Path, tmp_path: Path
) -> None:
    flat = Engine(Config.load(index_dir=tmp_path / "flat"))
    flat.build([corpus])
    hnsw = Engine(Config.load(index_dir=tmp_path / "hnsw", index_type="hnsw"))
    hnsw.build([corpus])
    assert flat.index.manifest["index_type"] == "flat"  # auto, on a small corpus
    assert hnsw.index.manifest["index_type"] == "hnsw"
    assert type(load(tmp_path / "hnsw").vectors).__name__ == "IndexHNSWFlat"
    question = "What did Lappo threaten?"
    ours, theirs = flat.search(question, k=4), hnsw.search(question, k=4)
    assert ours[0].chunk.source == theirs[0].chunk.source == LAPPO
    assert [h.chunk.id for h in ours] == [h.chunk.id for h in theirs]


def test_changing_the_index_type_rewrites_vectors_without_embedding(
    corpus: Path, tmp_path: Path
) -> None:
    config = Config.load(index_dir=tmp_path / "index")
    first = Engine(config).build([corpus])
    assert first.embedded == first.chunks
    again = Engine(config.with_(index_type="hnsw")).build([corpus])
    assert again.embedded == 0 and not again.full
    assert load(tmp_path / "index").manifest["index_type"] == "hnsw"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_a_filtered_search_ranks_only_the_allowed_passages(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = unit_rows(3000)
    store.write(tmp_path, version(vectors), index_type=kind)
    index = load(tmp_path)
    allowed = np.arange(1000, 1600, dtype=np.int64)  # a few documents' runs
    query = vectors[1234:1235] * 0.6 + vectors[10:11] * 0.4  # nearest overall: 10, not allowed
    query /= np.linalg.norm(query)
    best = allowed[np.argsort(-(vectors[allowed] @ query[0]))[:5]].tolist()
    exact = index.search(query, 5, allowed)  # few passages: compared one by one
    assert [i for i, _ in exact] == best
    monkeypatch.setattr(store, "EXACT_FILTERED", 0)  # FAISS's id selector, nprobe/efSearch kept
    selected = index.search(query, 5, allowed)
    assert [i for i, _ in selected][0] == 1234 and {i for i, _ in selected} <= set(allowed)
    assert len(selected) == 5
    assert index.search(query, 5, np.array([], dtype=np.int64)) == []
    index.close()


def clustered_rows(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 topics, as passage vectors are (Gaussian noise has no structure
    for product quantisation to learn, which real text has)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, 384)).astype(np.float32)
    x = centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, 384)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivfpq_keeps_codes_in_memory_and_ranks_exactly_from_disk(tmp_path: Path) -> None:
    assert store.index_type_for("ivfpq", store.PQ_MIN_POINTS - 1) == "flat"
    vectors = clustered_rows(12_000)
    store.write(tmp_path / "pq", version(vectors), index_type="ivfpq")
    store.write(tmp_path / "flat", version(vectors), index_type="flat")
    pq, flat = load(tmp_path / "pq"), load(tmp_path / "flat")
    assert pq.manifest["index_type"] == "ivfpq"
    assert pq.manifest["index_params"]["pq_bytes"] == store.PQ_BYTES
    size = (pq.folder / store.VECTORS).stat().st_size
    assert size * 8 < (flat.folder / store.VECTORS).stat().st_size  # what stays in memory

    queries = clustered_rows(60, seed=1)
    found = 0
    for q in queries:
        exact = {i for i, _ in flat.search(q[None], 10)}
        got = pq.search(q[None], 10)
        found += len(exact & {i for i, _ in got})
        # Scores are the full vectors' (float16 on disk), not the codes' approximations.
        assert all(abs(s - float(vectors[i] @ q)) < 2e-3 for i, s in got)
    assert found / (10 * len(queries)) >= 0.95
    assert np.allclose(pq.reconstruct([5, 6, 700]), vectors[[5, 6, 700]], atol=2e-3)
    allowed = np.arange(100, 200)
    assert {i for i, _ in pq.search(queries[:1], 5, allowed)} <= set(range(100, 200))
