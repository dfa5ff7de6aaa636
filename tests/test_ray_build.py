"""Index builds on a real local Ray cluster (2 CPUs, one per test session): the same index as a
local build, for the seeds and for a generated corpus of a few thousand passages, incremental
updates that send only new and changed files, and workers that die."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import Config, Engine, RagError, load
from rag.cluster import raybuild

LAPPO = "004_54fdbde5d22b5a7d.txt"
WORDS = [
    "border",
    "troops",
    "exercise",
    "railway",
    "bridge",
    "minister",
    "treaty",
    "drills",
    "sanctions",
    "convoy",
    "river",
    "harbour",
    "election",
    "village",
    "factory",
    "winter",
    "missile",
    "pipeline",
    "grain",
    "embassy",
    "parliament",
    "refugees",
    "satellite",
    "airfield",
    "brigade",
    "customs",
    "corridor",
    "summit",
    "frontier",
    "garrison",
]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    import ray

    raybuild.connect("local")
    yield
    ray.shutdown()


def same_index(a: Path, b: Path) -> None:
    """Two index folders hold the same passages, vectors (within float rounding) and manifest."""
    x, y = load(a), load(b)
    assert x.size == y.size
    assert [c.text for c in x.all_chunks()] == [c.text for c in y.all_chunks()]
    assert [(c.source, c.start, c.end) for c in x.all_chunks()] == [
        (c.source, c.start, c.end) for c in y.all_chunks()
    ]
    assert np.allclose(x.reconstruct(range(x.size)), y.reconstruct(range(y.size)), atol=1e-5)
    strip = ("created", "paths", "base")
    mx = {k: v for k, v in x.manifest.items() if k not in strip}
    my = {k: v for k, v in y.manifest.items() if k not in strip}
    for info in (*mx["documents"].values(), *my["documents"].values()):
        info.pop("path")
    assert mx == my


def build(corpus: Path, index_dir: Path, ray: str = "") -> object:
    return Engine(Config.load(index_dir=index_dir, ray=ray or None)).build([corpus])


def test_a_ray_build_of_the_seeds_is_the_local_build_even_when_a_worker_dies(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    died = tmp_path / "died"

    class DiesOnce(raybuild.Encoder):  # defined here: Ray ships it to the worker by value
        def __call__(self, batch: dict) -> dict:
            if not died.exists():
                died.touch()
                os._exit(1)  # the worker process dies mid-build, as on a lost machine
            return super().__call__(batch)

    monkeypatch.setattr(raybuild, "Encoder", DiesOnce)
    local = build(corpus, tmp_path / "local")
    on_ray = build(corpus, tmp_path / "ray", ray="local")
    assert died.exists()  # a worker died, Ray restarted it and retried its batch
    assert (on_ray.documents, on_ray.chunks, on_ray.embedded) == (5, local.chunks, local.chunks)
    same_index(tmp_path / "local", tmp_path / "ray")
    engine = Engine(Config.load(index_dir=tmp_path / "ray"))
    assert engine.search("What did Lappo threaten?", 1)[0].chunk.source == LAPPO


def generate(folder: Path, files: int, seed: int = 0) -> None:
    """`files` short news-like documents of one passage each (short, to embed quickly)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9))).capitalize() + "."
            for _ in range(rng.randint(2, 4))
        ]
        text = f"Report {n}\n\n" + " ".join(sentences) + "\n"
        (folder / f"report-{n:05d}.txt").write_text(text, encoding="utf-8")


def test_a_generated_corpus_builds_and_updates_on_ray_as_locally(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    generate(corpus, 2_000)
    local = build(corpus, tmp_path / "local")
    assert local.chunks == 2_000
    on_ray = build(corpus, tmp_path / "ray", ray="local")
    assert on_ray.chunks == local.chunks
    same_index(tmp_path / "local", tmp_path / "ray")

    # An update: only the new and changed files are read and embedded (on the cluster).
    (corpus / "report-00007.txt").write_text("Report 7\n\nThe convoy crossed the river.\n")
    (corpus / "report-00011.txt").unlink()
    generate(tmp_path / "more", 3, seed=1)
    for path in (tmp_path / "more").iterdir():
        shutil.copy(path, corpus / f"new-{path.name}")
    local = build(corpus, tmp_path / "local")
    on_ray = build(corpus, tmp_path / "ray", ray="local")
    assert on_ray.updated == ("report-00007.txt",) and on_ray.removed == ("report-00011.txt",)
    assert len(on_ray.added) == 3 and on_ray.unchanged == 1_998
    assert on_ray.embedded == local.embedded < 10
    same_index(tmp_path / "local", tmp_path / "ray")


def test_a_ray_build_that_fails_leaves_the_live_index(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir = tmp_path / "index"
    build(corpus, index_dir)
    before = load(index_dir).version

    class AlwaysDies(raybuild.Encoder):
        def __call__(self, batch: dict) -> dict:
            os._exit(1)

    monkeypatch.setattr(raybuild, "Encoder", AlwaysDies)
    monkeypatch.setattr(raybuild, "RETRIES", 1)  # one restart is enough to see it give up
    (corpus / "extra.md").write_text("# Extra\n\nThe extra document mentions zeppelins.\n", "utf-8")
    with pytest.raises(RagError, match="Ray build failed"):
        build(corpus, index_dir, ray="local")
    assert load(index_dir).version == before
    assert sorted(p.name for p in index_dir.iterdir() if not p.name.startswith(".")) == [
        "CURRENT",
        before,
    ]


def test_a_process_keeps_the_cluster_it_joined() -> None:
    import ray

    assert ray.is_initialized()
    # One cluster per process: a later build asking for another address uses this one.
    assert raybuild.connect("127.0.0.1:1")["CPU"] == 2
