"""Past one machine, measured on this one: Ray builds against local ones, Milvus Lite against
FAISS, and compressed (IVF-PQ) vectors against exact ones; the figures go into docs/SCALE.md
(between its `<!-- scale:measured -->` markers), where the plan for 10M and 100M passages is
computed from them.

- Ray against local: the same real documents (the first FILES HTML pages of the Rust
  documentation, `bench.realcorpus.source()`), built from scratch by `rag.ingest.build` in this
  process (the embedding model already loaded) and on a local Ray cluster started once before
  both (its start-up time reported apart), in alternating rounds (ABAB…).
- Milvus Lite against FAISS: the real corpus of `bench.realcorpus` (≥ 100k passages, every
  100th held out as a question), written into a FAISS folder (exact flat, as `auto` ships at
  this size) and into Milvus Lite; per-question latency of dense search and of BM25 search, in
  alternating rounds; Milvus's dense top 10 against FAISS's exact one (recall@10), and the
  overlap of the two lexical top 10s.
- IVF-PQ: the same 100k real passages: recall@10 against exact search and IVF, latency, and
  the bytes each index keeps in memory per passage.

    python -m bench scale          # about 20 minutes once the real corpus is cached
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import measure, realcorpus, report

DOC = report.PROJECT / "docs" / "SCALE.md"
FILES = 40  # documents of the Ray-against-local build
ROUNDS = 3
QUESTIONS = 30  # Milvus Lite takes seconds per BM25 question at 100k passages
K = 10
POOL = 40  # lexical candidates per question, as hybrid retrieval asks (max(4k, 20), k = 10)
_BLOCK = re.compile(r"<!-- scale:measured -->\n.*?<!-- /scale:measured -->\n", re.DOTALL)


def _copy_documents(folder: Path) -> Path:
    root = realcorpus.source()
    if root is None:
        raise SystemExit(
            "no documentation folder: install a Rust toolchain or set RAG_BENCH_REAL_DOCS"
        )
    corpus = folder / "docs"
    for path in list(realcorpus.files(root))[:FILES]:
        dest = corpus / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return corpus


def ray_against_local(rounds: int) -> dict:
    """Seconds of a full build of the same documents, here and on a local Ray cluster."""
    import ray

    from rag import Config, embed, ingest
    from rag.cluster import raybuild

    work = Path(tempfile.mkdtemp(prefix="rag-scale-"))
    corpus = _copy_documents(work)
    config = Config.load()
    embedder = embed.load(config.embed_model, config.batch_size, config.threads)
    began = time.perf_counter()
    raybuild.connect("local")
    ray_start = time.perf_counter() - began
    count = iter(range(1000))

    def side(cluster: str) -> dict:
        def build() -> dict:
            index_dir = work / f"index-{next(count)}"
            chosen = Config.load(index_dir=index_dir, ray=cluster or None)
            t = time.perf_counter()
            summary = ingest.build([corpus], chosen, embedder=None if cluster else embedder)
            seconds = time.perf_counter() - t
            shutil.rmtree(index_dir, ignore_errors=True)
            return {"s": seconds, "passages": summary.chunks, "documents": summary.documents}

        return build

    got = measure.alternate({"local": side(""), "ray": side("local")}, rounds)
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    local = [r["s"] for r in got["local"]]
    on_ray = [r["s"] for r in got["ray"]]
    passages = got["local"][0]["passages"]
    return {
        "documents": got["local"][0]["documents"],
        "passages": passages,
        "local_s": local,
        "ray_s": on_ray,
        "ratio": measure.ratios(on_ray, local),
        "local_rate": passages / statistics.median(local),
        "ray_rate": passages / statistics.median(on_ray),
        "ray_start_s": ray_start,
    }


def _version(vectors: np.ndarray, texts: list[str]) -> object:
    from rag import store
    from rag.types import Chunk

    chunks = [Chunk(i, f"doc-{i // 50:05d}.html", "", 0, len(t), t, t) for i, t in enumerate(texts)]
    return store.Version({"documents": {}}, chunks, vectors)


def _latencies(index: object, qv: np.ndarray, questions: list[str]) -> dict:
    dense, words, dense_ids, word_ids = [], [], [], []
    for vector, question in zip(qv, questions):
        t = time.perf_counter()
        found = index.search(vector[None], K)
        dense.append(time.perf_counter() - t)
        t = time.perf_counter()
        lexical = index.words(question, POOL)
        words.append(time.perf_counter() - t)
        dense_ids.append([i for i, _ in found])
        word_ids.append([i for i, _ in lexical[:K]])
    return {"dense": dense, "words": words, "dense_ids": dense_ids, "word_ids": word_ids}


def milvus_against_faiss(rounds: int, data: tuple) -> dict:
    from rag import embed, lexical, store
    from rag.cluster import milvus

    vectors, texts, questions = data
    embedder = embed.load("all-MiniLM-L6-v2")
    qv = embedder.encode(questions)
    work = Path(tempfile.mkdtemp(prefix="rag-scale-milvus-"))
    version = _version(vectors, texts)

    def write_lexical(folder: Path) -> None:
        lexical.save(lexical.build(texts), folder / lexical.FOLDER)

    gc.collect()
    rss = measure.rss_mb()
    t = time.perf_counter()
    store.write(work / "faiss", store.Version(version.manifest, version.chunks, vectors,
                                              extras=(write_lexical,)), "flat")  # fmt: skip
    faiss_write = time.perf_counter() - t
    faiss_index = store.load(work / "faiss")
    faiss_index.words("warm up", POOL)  # loads the BM25 arrays once, as an open engine has them
    gc.collect()
    faiss_mb, rss = measure.rss_mb() - rss, measure.rss_mb()
    # Milvus Lite runs inside this process: its memory is what the process grows by.
    lite = milvus.Store(f"milvus:{work / 'lite.db'}")
    t = time.perf_counter()
    lite.write(version, "flat", None)
    milvus_write = time.perf_counter() - t
    milvus_index = lite.load()
    milvus_index.words("warm up", POOL)
    gc.collect()
    milvus_mb = measure.rss_mb() - rss
    got = measure.alternate(
        {
            "faiss": lambda: _latencies(faiss_index, qv, questions),
            "milvus": lambda: _latencies(milvus_index, qv, questions),
        },
        rounds,
    )
    exact, approx = got["faiss"][0], got["milvus"][0]
    recall = np.mean(
        [len(set(a) & set(b)) / K for a, b in zip(exact["dense_ids"], approx["dense_ids"])]
    )
    overlap = np.mean(
        [
            len(set(a) & set(b)) / max(1, len(a))
            for a, b in zip(exact["word_ids"], approx["word_ids"])
            if a
        ]
    )
    shutil.rmtree(work, ignore_errors=True)

    def ms(side: str, kind: str, q: float) -> list[float]:
        return [measure.percentile(r[kind], q) * 1000 for r in got[side]]

    return {
        "passages": len(texts),
        "questions": len(questions),
        "faiss_write_s": faiss_write,
        "milvus_write_s": milvus_write,
        "dense_p50": {s: ms(s, "dense", 50) for s in ("faiss", "milvus")},
        "dense_p95": {s: ms(s, "dense", 95) for s in ("faiss", "milvus")},
        "words_p50": {s: ms(s, "words", 50) for s in ("faiss", "milvus")},
        "words_p95": {s: ms(s, "words", 95) for s in ("faiss", "milvus")},
        "recall": float(recall),
        "lexical_overlap": float(overlap),
        "faiss_mb": faiss_mb,
        "milvus_mb": milvus_mb,
    }


def compressed(vectors: np.ndarray, queries: np.ndarray, label: str) -> list[dict]:
    """Flat, IVF and IVF-PQ over the same vectors: recall@10 against flat, latency, memory."""
    from rag import store

    rows = []
    work = Path(tempfile.mkdtemp(prefix="rag-scale-pq-"))
    texts = [""] * len(vectors)
    truth = None
    for kind in ("flat", "ivf", "ivfpq"):
        folder = work / kind
        t = time.perf_counter()
        store.write(folder, _version(vectors, texts), kind)
        built = time.perf_counter() - t
        index = store.load(folder)
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            found.append([i for i, _ in index.search(q[None], K)])
            times.append(time.perf_counter() - t)
        if kind == "flat":
            truth = found
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(truth, found)])
        memory = (index.folder / store.VECTORS).stat().st_size
        rows.append({
            "store": label, "kind": kind, "passages": len(vectors), "build_s": built,
            "recall": float(recall), "p50_ms": measure.percentile(times, 50) * 1000,
            "p95_ms": measure.percentile(times, 95) * 1000,
            "bytes_per_passage": memory / len(vectors), "params": index.manifest["index_params"],
        })  # fmt: skip
        index.close()
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return rows


def run(quick: bool = False) -> dict:
    from rag import embed

    began = datetime.datetime.now().astimezone()
    load_start = measure.load_average()
    rounds = 2 if quick else ROUNDS
    results: dict = {"ray": ray_against_local(rounds)}
    real = realcorpus.load()
    if real is None:
        raise SystemExit("the real corpus is not built: run `python -m bench.realcorpus` first")
    vectors, texts, meta = real
    store_vectors, questions = realcorpus.held_out(vectors, texts)
    keep = np.ones(len(texts), dtype=bool)
    keep[::100] = False
    store_texts = [t for t, k in zip(texts, keep) if k]
    questions = questions[: (50 if quick else QUESTIONS)]
    results["milvus"] = milvus_against_faiss(rounds, (store_vectors, store_texts, questions))
    qv = embed.load("all-MiniLM-L6-v2").encode(questions)
    results["compressed"] = compressed(store_vectors, qv, "real passages")
    results["corpus"] = {"passages": meta["passages"], "files": meta["files_done"],
                         "source": meta["source"]}  # fmt: skip
    write(results, began, load_start)
    return results


def _spread(values: list[float]) -> str:
    return measure.spread(values)


def write(r: dict, began: datetime.datetime, load: list[float]) -> Path:
    ray, mil = r["ray"], r["milvus"]
    lines = [
        "<!-- scale:measured -->",
        "## Measured on this machine\n",
        report.provenance(began, "python -m bench scale", load),
        f"### Ray against local (same {ray['documents']} documents, {ray['passages']:,} passages)\n",
        "Full builds from scratch, in alternating rounds; median (lowest–highest).\n",
        report.table(
            ["build", "seconds", "passages/s"],
            [
                ["local (this process)", _spread(ray["local_s"]), ray["local_rate"]],
                ["Ray, local cluster of 2 CPUs", _spread(ray["ray_s"]), ray["ray_rate"]],
                ["Ray ÷ local", _spread(ray["ratio"]), ""],
            ],
        ),
        f"Starting the local Ray cluster took {ray['ray_start_s']:.1f} s (once per process, "
        "not in the figures above).\n",
        f"### Milvus Lite against FAISS ({mil['passages']:,} real passages, "
        f"{mil['questions']} held-out questions)\n",
        report.table(
            ["", "FAISS (flat, as shipped at this size)", "Milvus Lite"],
            [
                ["write the version (s)", mil["faiss_write_s"], mil["milvus_write_s"]],
                [
                    "dense search p50 (ms)",
                    _spread(mil["dense_p50"]["faiss"]),
                    _spread(mil["dense_p50"]["milvus"]),
                ],
                [
                    "dense search p95 (ms)",
                    _spread(mil["dense_p95"]["faiss"]),
                    _spread(mil["dense_p95"]["milvus"]),
                ],
                [
                    f"BM25 top {POOL} p50 (ms)",
                    _spread(mil["words_p50"]["faiss"]),
                    _spread(mil["words_p50"]["milvus"]),
                ],
                [
                    f"BM25 top {POOL} p95 (ms)",
                    _spread(mil["words_p95"]["faiss"]),
                    _spread(mil["words_p95"]["milvus"]),
                ],
                ["dense recall@10 against exact FAISS", 1.0, mil["recall"]],
                ["BM25 top-10 overlap with FAISS's", 1.0, mil["lexical_overlap"]],
                ["memory the process grew by (MB)", mil["faiss_mb"], mil["milvus_mb"]],
            ],
        ),  # fmt: skip
        "### Compressed vectors: IVF-PQ against exact and IVF\n",
        report.table(
            [
                "vectors",
                "index",
                "passages",
                "recall@10",
                "p50 ms",
                "p95 ms",
                "bytes/passage in memory",
                "build s",
                "settings",
            ],
            [
                [
                    c["store"],
                    c["kind"],
                    c["passages"],
                    c["recall"],
                    c["p50_ms"],
                    c["p95_ms"],
                    c["bytes_per_passage"],
                    c["build_s"],
                    json.dumps(c["params"]),
                ]
                for c in r["compressed"]
            ],
        ),  # fmt: skip
        f"Real passages: {r['corpus']['passages']:,} passages of {r['corpus']['files']:,} pages "
        f"of {r['corpus']['source']} (`python -m bench.realcorpus`), every 100th held out as a "
        "question. IVF-PQ also keeps the full vectors as float16 on disk (768 bytes a passage) "
        "and reads the candidates' rows from there.\n",
        plan(r),
        f"<!-- scale-figures: {json.dumps(_plain(r))} -->",
        "<!-- /scale:measured -->\n",
    ]
    block = "\n".join(lines)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Past one machine\n\n"
    text = _BLOCK.sub(lambda _: block, text) if _BLOCK.search(text) else text + "\n" + block
    DOC.write_text(text, encoding="utf-8")
    return DOC


# Figures the plan needs that this machine cannot measure: stated as assumptions, each named.
ASSUMED = {
    # MiniLM-L6 at 128 word pieces on one T4-class GPU, fp16: sentence-transformers' published
    # speeds for this model are several thousand sentences a second; 4,000 passages/s is taken.
    "gpu_passages_s": 4_000,
    "usd_core_hour": 0.04,  # an on-demand cloud vCPU-hour
    "usd_gpu_hour": 0.50,  # an on-demand T4-class GPU-hour (with its host)
    "node_cores": 16,
    "node_ram_gb": 64,
}


def plan(r: dict) -> str:
    """The 10M and 100M plan, computed from the measured figures and the ASSUMED ones."""
    ray, mil = r["ray"], r["milvus"]
    a = ASSUMED
    per_core = ray["ray_rate"] / 2  # passages/s per CPU core on Ray, this machine's 2 cores
    pq = next(c for c in r["compressed"] if c["kind"] == "ivfpq" and c["store"] == "real passages")
    flat = next(c for c in r["compressed"] if c["kind"] == "flat" and c["store"] == "real passages")
    milvus_bytes = mil["milvus_mb"] * 1e6 / mil["passages"]
    core_hours_per_m = 1e6 / per_core / 3600
    usable = a["node_ram_gb"] * 1e9 * 0.7  # a node's memory for the index, the rest for serving
    rows = []
    for n in (10_000_000, 100_000_000):
        nodes_cpu = 8 if n == 10_000_000 else 32
        cpu_hours = n / (per_core * a["node_cores"] * nodes_cpu) / 3600
        gpus = 2 if n == 10_000_000 else 8
        gpu_hours = n / (a["gpu_passages_s"] * gpus) / 3600
        rows.append([
            f"{n // 1_000_000}M",
            f"{nodes_cpu} × {a['node_cores']} cores: {cpu_hours:.1f} h",
            f"{gpus} GPUs: {gpu_hours:.1f} h",
            f"${core_hours_per_m * a['usd_core_hour']:.2f} (CPU) / "
            f"${1e6 / a['gpu_passages_s'] / 3600 * a['usd_gpu_hour']:.3f} (GPU)",
            f"{n * flat['bytes_per_passage'] / 1e9:.0f} GB",
            f"{n * pq['bytes_per_passage'] / 1e9:.1f} GB (+{n * 768 / 1e9:.0f} GB on disk)",
            f"{n * milvus_bytes / 1e9:.0f} GB",
            f"{math.ceil(n * milvus_bytes / usable)} / {math.ceil(n * pq['bytes_per_passage'] / usable)}",
        ])  # fmt: skip
    return "\n".join(
        [
            "### The plan, computed from these figures\n",
            f"Embedding on Ray ran at {per_core:.1f} passages/s per CPU core here "
            f"({core_hours_per_m:.1f} core-hours per million passages); assumed, not measured here: "
            + ", ".join(f"{k} {v}" for k, v in a.items())
            + ".\n",
            report.table(
                [
                    "passages",
                    "embedding on CPU nodes",
                    "embedding on GPUs",
                    "cost per million",
                    "flat vectors in memory",
                    "IVF-PQ in memory",
                    "Milvus memory (as measured here)",
                    "64 GB shards: Milvus / IVF-PQ",
                ],
                rows,
            ),  # fmt: skip
        ]
    )


def _plain(r: dict) -> dict:
    """The figures the plan is computed from, without the per-question id lists."""
    return json.loads(json.dumps(r, default=float))
