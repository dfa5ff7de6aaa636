"""Retrieval latency and scale: exact (flat) against approximate (HNSW, IVF) FAISS indexes.

The stores hold 10k, 100k and 1M unit vectors of the model's dimension: the real passage
vectors of Cranfield and SQuAD (3.2k) and, for the rest, synthetic ones drawn from a Gaussian
with the mean and covariance of those real vectors (so they spread like MiniLM passages do,
not evenly over the sphere). The queries are real questions (Cranfield and SQuAD) encoded by
the model. Recall@10 of an approximate index is measured against the exact top 10 on the same
store. A second store of uniformly random unit vectors gives the worst case for approximate
search, as the issue allows. Latency is per single query, as a user asks them.
"""

from __future__ import annotations

import datetime
import gc
import time
from pathlib import Path

import numpy as np

from bench import measure, report

NAME = "retrieval"
TITLE = "Retrieval latency and scale"
K = 10
DIM = 384
NPROBES = (8, 16, 32, 64, 128, 256, 512)
# HNSW builds take minutes from 100k on 2 cores (single-threaded insertion dominates); 1M is
# left out unless asked.
HNSW_UP_TO = 100_000
ROUNDS = 3  # exact-search latency is measured this many times over (its target's spread)


def cache_dir() -> Path:
    from rag import Config

    return Path(Config.load().models_dir).parent / "bench"


def real_vectors(embedder) -> tuple[np.ndarray, list[str], np.ndarray]:  # noqa: ANN001
    """(passage vectors, query texts, query vectors) of Cranfield and SQuAD. The passages come
    from indexes kept in the cache (updated incrementally: built once, then reused)."""
    from rag import Config, ingest, store

    config = Config.load()
    parts, texts = [], []
    for name in ("cranfield", "squad"):
        folder = cache_dir() / name
        docs = folder / "docs"
        if not docs.is_dir():
            measure.write_corpus(measure.documents(name), docs)
        ingest.build([docs], config.with_(index_dir=folder / "index"), embedder=embedder)
        index = store.load(folder / "index")
        parts.append(index.vectors.reconstruct_n(0, index.size))
        index.close()
        texts += measure.queries(name)
    return np.vstack(parts).astype(np.float32), texts, embedder.encode(texts)


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors from the Gaussian fitted to `real` (its mean and covariance)."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0).astype(np.float64)
    cov = np.cov(real.T.astype(np.float64)) + 1e-6 * np.eye(real.shape[1])
    factor = np.linalg.cholesky(cov).astype(np.float32)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        z = rng.standard_normal((b - a, real.shape[1]), dtype=np.float32)
        out[a:b] = unit(z @ factor.T + mean.astype(np.float32))
    return out


def uniform(n: int, dim: int = DIM, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        out[a:b] = unit(rng.standard_normal((b - a, dim), dtype=np.float32))
    return out


def _latency(index, queries: np.ndarray, threads: int = 1) -> list[float]:  # noqa: ANN001
    """Seconds of each single-query search for the top K."""
    import faiss

    faiss.omp_set_num_threads(threads)
    out = []
    for i in range(len(queries)):
        q = queries[i : i + 1]
        t = time.perf_counter()
        index.search(q, K)
        out.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(_cores())
    return out


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _recall(index, queries: np.ndarray, truth: np.ndarray) -> float:  # noqa: ANN001
    _, found = index.search(queries, K)
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)]))


def _mb(index) -> float:  # noqa: ANN001
    import faiss

    return faiss.serialize_index(index).nbytes / 1e6


def _ms(values: list[float], q: float) -> float:
    return round(measure.percentile(values, q) * 1e3, 3)


def _store_rows(label: str, x: np.ndarray, queries: np.ndarray, nq: int, hnsw: bool) -> list[dict]:
    """Build flat, IVF (and HNSW) over x; latency, recall@K against flat, size, build time."""
    import faiss

    from rag import store

    n = len(x)
    rows = []
    t = time.perf_counter()
    flat = store.make_vectors(x, "flat")
    built = time.perf_counter() - t
    _, truth = flat.search(queries, K)
    rounds = [_latency(flat, queries[:nq], 1) for _ in range(ROUNDS)]
    lat1 = [t for r in rounds for t in r]
    lat2 = _latency(flat, queries[:nq], 2)
    rows.append(
        {
            "store": label, "n": n, "index": "flat (exact)", "param": "", "build_s": built,
            "p50": _ms(lat1, 50), "p99": _ms(lat1, 99), "p50_2threads": _ms(lat2, 50),
            "recall": 1.0, "mb_per_m": _mb(flat) / n * 1e6,
            "p50_rounds": [_ms(r, 50) for r in rounds],
        }
    )  # fmt: skip
    del flat
    gc.collect()
    t = time.perf_counter()
    ivf = store.make_vectors(x, "ivf")
    built = time.perf_counter() - t
    size = _mb(ivf) / n * 1e6
    shipped = ivf.nprobe  # what store.make_vectors sets: the share of lists scanned by default
    for nprobe in sorted({*NPROBES, shipped}):
        if nprobe > ivf.nlist:
            continue
        ivf.nprobe = nprobe
        lat = _latency(ivf, queries[:nq])
        mark = " (shipped)" if nprobe == shipped else ""
        rows.append(
            {
                "store": label, "n": n, "index": f"IVF-Flat, {ivf.nlist} lists", "param": f"nprobe {nprobe}{mark}",
                "shipped": nprobe == shipped,
                "build_s": built, "p50": _ms(lat, 50), "p99": _ms(lat, 99), "p50_2threads": None,
                "recall": _recall(ivf, queries, truth), "mb_per_m": size,
            }
        )  # fmt: skip
    del ivf
    gc.collect()
    if hnsw:
        t = time.perf_counter()
        h = store.make_vectors(x, "hnsw")
        built = time.perf_counter() - t
        size = _mb(h) / n * 1e6
        for ef in (64, 128, 256, 512):
            h.hnsw.efSearch = ef
            lat = _latency(h, queries[:nq])
            rows.append(
                {
                    "store": label, "n": n, "index": "HNSW-Flat, M 32", "param": f"efSearch {ef}",
                    "build_s": built, "p50": _ms(lat, 50), "p99": _ms(lat, 99), "p50_2threads": None,
                    "recall": _recall(h, queries, truth), "mb_per_m": size,
                }
            )  # fmt: skip
        del h
        gc.collect()
    faiss.omp_set_num_threads(_cores())
    return rows


def _calibration(real: np.ndarray, queries: np.ndarray) -> list[list]:
    """Recall of the same small IVF on real passage vectors, the fitted Gaussian and uniform
    vectors of the same count: how much harder the synthetic stores are than real text."""
    import faiss

    n = len(real)
    nlist = int(4 * np.sqrt(n))
    rows = []
    for label, x in (
        ("real passages (Cranfield + SQuAD)", real),
        ("Gaussian fitted to them", synthetic(real, n, seed=3)),
        ("uniform on the sphere", uniform(n, real.shape[1], seed=4)),
    ):
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        _, truth = flat.search(queries, K)
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.min_points_per_centroid = 1  # a small sample, on purpose: no warning
        ivf.train(x)
        ivf.add(x)
        row: list = [label, n]
        for nprobe in (2, 8):
            ivf.nprobe = nprobe
            row.append(round(_recall(ivf, queries, truth), 3))
        rows.append(row)
    return rows, nlist


def run(quick: bool = False) -> dict:
    from rag import Config, embed, store

    began = datetime.datetime.now().astimezone()
    config = Config.load()
    embedder = embed.load(config.embed_model, config.batch_size, config.threads)
    real, texts, queries = real_vectors(embedder)
    nq = 200 if quick else 500
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)

    # Query encoding alone, and encoding plus the exact search on the 100k store.
    enc = []
    for text in texts[:nq]:
        t = time.perf_counter()
        embedder.encode_query(text)
        enc.append(time.perf_counter() - t)

    rows: list[dict] = []
    for n in sizes:
        x = np.vstack([real, synthetic(real, n - len(real))])
        rows += _store_rows("fitted", x, queries, nq, hnsw=n <= HNSW_UP_TO)
        if n == 100_000:
            flat = store.make_vectors(x, "flat")
            both = []
            import faiss

            faiss.omp_set_num_threads(1)
            for text in texts[:nq]:
                t = time.perf_counter()
                flat.search(embedder.encode_query(text), K)
                both.append(time.perf_counter() - t)
            faiss.omp_set_num_threads(_cores())
            del flat
        del x
        gc.collect()
    worst_n = 100_000
    rows += _store_rows("uniform", uniform(worst_n), queries, nq, hnsw=False)
    from bench import realcorpus

    found = None if quick else realcorpus.load()
    real_meta = None
    if found is not None:
        vectors, passages, real_meta = found
        store_x, questions = realcorpus.held_out(vectors, passages)
        rows += _store_rows("real", store_x, embedder.encode(questions), nq, hnsw=False)
        real_meta = {**real_meta, "store": len(store_x), "questions": len(questions)}
        del vectors, store_x
        gc.collect()
    calibration, cal_lists = _calibration(real, queries)
    return _write(
        began, rows, enc, both, calibration, cal_lists, nq, len(queries), len(real), quick,
        real_meta,
    )  # fmt: skip


LABELS = {
    "fitted": "Gaussian fit + real",
    "uniform": "uniform (worst case)",
    "real": "real passages (Rust docs)",
}


def _write(
    began, rows, enc, both, calibration, cal_lists, nq, nqueries, nreal, quick, real_meta
) -> dict:  # noqa: ANN001
    from rag import store

    flat = {r["n"]: r for r in rows if r["store"] == "fitted" and r["index"].startswith("flat")}
    table = []
    for r in rows:
        base = next(f for f in rows if f["store"] == r["store"] and f["n"] == r["n"])
        table.append(
            [
                LABELS[r["store"]],
                r["n"],
                r["index"],
                r["param"],
                round(r["build_s"], 2),
                r["p50"],
                r["p99"],
                r["p50_2threads"],
                f"{base['p50'] / r['p50']:.1f}×",
                round(r["recall"], 3),
                round(r["mb_per_m"]),
            ]
        )
    body = (
        f"Stores of unit vectors (dimension {DIM}): the {nreal:,} real passage vectors of Cranfield "
        "and SQuAD plus synthetic ones drawn from a Gaussian with their mean and covariance; a "
        "second store of uniformly random unit vectors is the worst case for approximate search. "
        f"Queries: {nqueries} real questions (Cranfield and SQuAD) encoded by the model; latency "
        f"over {nq} single-question searches (top {K}), FAISS on 1 OpenMP thread unless said; "
        f"recall@{K} of all {nqueries} questions against the exact top {K} on the same store. "
        "Build = adding the vectors (IVF: also learning the lists). MB per million = the "
        "serialized index size scaled to 10^6 passages.\n\n"
    )
    body += report.table(
        [
            "store", "passages", "index", "search setting", "build s", "p50 ms", "p99 ms",
            "p50 ms, 2 threads", "speed-up vs exact p50", f"recall@{K}", "MB per million",
        ],
        table,
    )  # fmt: skip
    e50, e99 = _ms(enc, 50), _ms(enc, 99)
    b50, b99 = _ms(both, 50), _ms(both, 99)
    body += (
        f"\n**With the question's encoding** (MiniLM, one question at a time): encoding alone p50 "
        f"{e50} ms, p99 {e99} ms; encoding + exact search of 100k passages p50 {b50} ms, p99 "
        f"{b99} ms, so at 100k the search is {flat[100_000]['p50'] / b50:.0%} of the dense "
        "retrieval time.\n"
    )
    t1 = {n: f["p50"] for n, f in flat.items()}
    t2 = {n: f["p50_2threads"] for n, f in flat.items()}
    body += (
        "\n**FAISS threads.** Exact search p50 with 2 OpenMP threads against 1: "
        + ", ".join(f"{n:,}: {t2[n]} ms vs {t1[n]} ms ({t2[n] / t1[n]:.2f}×)" for n in sorted(t1))
        + ". A single question's search is memory-bound; on 2 cores the second thread mostly waits "
        "(and loses badly when the other core is busy, e.g. generating).\n"
    )
    body += (
        f"\n**Calibration of the synthetic stores.** The same IVF ({cal_lists} lists) on "
        f"{nreal:,} vectors of each kind, recall@{K} of the real questions: real text vectors "
        "cluster by topic and are far easier for approximate search than the Gaussian fitted to "
        "them, which is nearly as hard as uniform vectors. So the recall figures above are "
        "pessimistic for real corpora.\n\n"
    )
    body += report.table(
        ["vectors", "count", f"recall@{K}, nprobe 2", f"recall@{K}, nprobe 8"], calibration
    )
    per_ms = t1[100_000] / 100_000
    crossing = e50 / per_ms
    body += (
        f"\n**Index type.** Exact search costs about {per_ms * 1e6:.0f} µs per thousand passages "
        f"({t1[100_000]} ms at 100k, so it crosses the time to encode the question, {e50} ms, at "
        f'about {crossing:,.0f} passages). `index_type = "auto"` (the default; `RAG_INDEX_TYPE`) '
        f"keeps exact search below {store.APPROXIMATE_FROM:,} passages, where it costs at most "
        "about as much as the encoding and recall is perfect, and switches to IVF from there "
        f"({store.ivf_lists(1_000_000):,} lists at a million, scanning "
        f"{store.IVF_PROBE_SHARE:.1%} of them per question). IVF rather than HNSW: it learns in "
        "about a minute and an update adds vectors to the lists of the previous version instead "
        "of rebuilding a graph (an HNSW build of a million vectors had not finished after half an hour here, under load), so "
        "updates stay proportional to the change. `flat`, `ivf` and `hnsw` can be forced.\n"
    )
    largest = max(flat)
    approx = [
        r
        for r in rows
        if r["store"] == "fitted" and r["n"] == largest and not r["index"].startswith("flat")
    ]
    pick = next(r for r in approx if r.get("shipped"))  # the setting `auto` builds and searches
    targets = [
        report.target(
            "exact search p50 ≤ 2 ms at 100k passages",
            flat[100_000]["p50_rounds"],
            2.0,
            f"flat p50 {t1[100_000]} ms, p99 {flat[100_000]['p99']} ms (1 thread); "
            f"{flat[100_000]['mb_per_m'] * 0.1:.0f} MB scanned per question",
        ),
        report.target(
            f"approximate recall@{K} ≥ 0.95 at {largest:,} passages, shipped setting",
            round(pick["recall"], 3),
            0.95,
            f"{pick['index']}, {pick['param']}: p50 {pick['p50']} ms vs exact {flat[largest]['p50']} "
            f"ms ({flat[largest]['p50'] / pick['p50']:.1f}× faster), Gaussian-fit store",
            higher=True,
        ),
    ]
    if real_meta:
        rn = real_meta["store"]
        shipped_real = next(r for r in rows if r["store"] == "real" and r.get("shipped"))
        body += (
            f"\n**Real passage vectors.** {real_meta['passages']:,} passages of "
            f"{real_meta['files_done']:,} HTML pages of `{real_meta['source']}` (the Rust "
            "toolchain's documentation), read, cut and embedded by rag at the shipped settings "
            "(`python -m bench.realcorpus`, cached outside the repository); every 100th passage "
            f"is held out and its first sentence asked as a question ({real_meta['questions']:,} "
            f"questions), the other {rn:,} are the store. At this size `auto` searches exactly; "
            "the IVF rows show what approximate search would give on real text.\n"
        )
        targets_real = [
            report.target(
                f"approximate recall@{K} ≥ 0.95 on {rn:,} real passages, shipped setting",
                round(shipped_real["recall"], 3),
                0.95,
                f"{shipped_real['index']}, {shipped_real['param']}: p50 {shipped_real['p50']} ms",
                higher=True,
            )
        ]
    else:
        targets_real = []
        body += (
            "\n**Real passage vectors at 100k+** were not in this run: build them once with "
            "`python -m bench.realcorpus` (about an hour and a quarter on 2 cores), then run "
            "this benchmark again.\n"
        )
    if quick:
        body += "\n(`--quick`: 10k and 100k only; the full run adds 1M.)\n"
    report.write_section(NAME, TITLE, body, targets + targets_real, began=began)
    return {"rows": rows}
