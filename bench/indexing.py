"""Indexing throughput: the whole pipeline against plain SentenceTransformer.encode, and updates.

For each corpus the files are indexed from scratch by `rag.ingest.build` (read, clean, chunk,
embed, store with the BM25 part), then the very texts that index embedded (title + ". " +
passage) are encoded by the same loaded `SentenceTransformer` in one `encode` call with the same
batch size, in the same process and threads. The two run interleaved for three rounds (the
first side alternating) and each round gives a ratio; the median and spread are reported. Then 0 %, 1 % and 10 % of the files are changed and the index updated.
"""

from __future__ import annotations

import datetime
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench import measure, report

NAME = "indexing"
TITLE = "Indexing throughput"
TARGET = 0.9


def _build(docs: Path, index_dir: Path, config, embedder) -> tuple[dict, object]:  # noqa: ANN001
    from rag import ingest

    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks.setdefault(stage, time.perf_counter())

    began = time.perf_counter()
    summary = ingest.build(
        [docs], config.with_(index_dir=index_dir), progress=progress, embedder=embedder
    )
    ended = time.perf_counter()
    write_at = marks.get("writing", ended)
    embed_at = marks.get("embedding", write_at)  # an update that embeds nothing has no stage
    stages = {
        "total": ended - began,
        "read_clean_chunk": embed_at - began,
        "embed": write_at - embed_at,
        "store": ended - write_at,
    }
    return stages, summary


def _raw(texts: list[str], embedder) -> float:  # noqa: ANN001
    began = time.perf_counter()
    embedder.model.encode(
        texts,
        batch_size=embedder.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return time.perf_counter() - began


def _corpus(name: str, work: Path, config, embedder, rounds: int, limit: int | None) -> dict:  # noqa: ANN001
    from rag import ingest, store

    files = measure.documents(name)[:limit]
    docs = measure.write_corpus(files, work / name / "docs")
    texts: list[str] = []
    built: list[Path] = []

    def ours() -> dict:
        index_dir = work / name / f"index-{len(built)}"
        if built:
            shutil.rmtree(built[-1])  # one index on disk at a time; the last is kept for updates
        built.append(index_dir)
        stages, summary = _build(docs, index_dir, config, embedder)
        if not texts:
            index = store.load(index_dir)
            texts.extend(ingest.vector_text(c) for c in index.all_chunks())
            index.close()
            assert len(texts) == summary.chunks
        return stages

    # Ours first in round 0: it writes the index whose passages raw encodes.
    runs = measure.alternate({"ours": ours, "raw": lambda: _raw(texts, embedder)}, rounds)
    pieces = sum(embedder.count_tokens(texts))
    totals = [o["total"] for o in runs["ours"]]
    middle = sorted(runs["ours"], key=lambda o: o["total"])[rounds // 2]  # the median round
    result = {
        "name": name,
        "files": len(files),
        "passages": len(texts),
        "pieces": pieces,
        "ours": middle,
        "ours_total": totals,
        "ours_embed": [o["embed"] for o in runs["ours"]],
        "raw": runs["raw"],
        # Throughput ratios, round by round: the whole pipeline, and its embedding stage alone.
        "ratio": [r / o["total"] for o, r in zip(runs["ours"], runs["raw"], strict=True)],
        "embed_ratio": [r / o["embed"] for o, r in zip(runs["ours"], runs["raw"], strict=True)],
    }
    result["updates"] = _updates(docs, built[-1], config, embedder, middle)
    return result


def _updates(docs: Path, index_dir: Path, config, embedder, full: dict) -> list[dict]:  # noqa: ANN001
    """Change 0 %, 1 % and 10 % of the files (one sentence appended) and update the index."""
    files = sorted(docs.glob("*.txt"))
    rows = []
    for share in (0.0, 0.01, 0.10):
        n = math.ceil(share * len(files))
        step = max(1, len(files) // n) if n else 1
        for path in files[::step][:n]:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(
                    f"\nThis document was revised for the update benchmark at {time.time_ns()}.\n"
                )
        stages, summary = _build(docs, index_dir, config, embedder)
        assert not summary.full and len(summary.updated) == n, summary
        rows.append(
            {
                "share": share,
                "files": n,
                "embedded": summary.embedded,
                "seconds": stages["total"],
                "embed": stages["embed"],
                "vs_full": stages["total"] / full["total"],
            }
        )
    return rows


# Cranfield is cut to its first files so that three rounds of each side take minutes, not an
# hour, on 2 cores.
CRANFIELD_FILES = 700


def run(quick: bool = False) -> dict:
    import torch

    from rag import Config, embed

    began = datetime.datetime.now().astimezone()
    config = Config.load()
    embedder = embed.load(config.embed_model, config.batch_size, config.threads)
    embedder.encode(["a warm-up passage, so first-call costs fall on no measurement"] * 64)
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="rag-bench-indexing-") as tmp:
        results = [
            _corpus(name, Path(tmp), config, embedder, rounds, limit)
            for name, limit in (("cranfield", CRANFIELD_FILES), ("squad", None))
        ]

    rows = []
    for r in results:
        o = r["ours"]
        rows.append(
            [
                r["name"],
                r["files"],
                r["passages"],
                measure.spread(r["ratio"]) + "×",
                measure.spread(r["embed_ratio"]) + "×",
                round(r["pieces"] / statistics.median(r["ours_embed"])),
                round(r["pieces"] / statistics.median(r["raw"])),
                measure.spread(r["ours_total"]),
                measure.spread(r["raw"]),
                round(o["read_clean_chunk"], 2),
                round(o["embed"], 2),
                round(o["store"], 2),
            ]
        )
    body = (
        f"Batch size {config.batch_size}, {torch.get_num_threads()} torch threads, one process; "
        f"{rounds} rounds, each side once a round, the first side alternating (ours, raw; raw, "
        "ours; …); figures are medians with the lowest and highest round in brackets, and each "
        "ratio is taken round by round. *ours* is `rag.ingest.build` from the files to a "
        "written index (read, clean, chunk, embed, SQLite passages, FAISS vectors, BM25 arrays, "
        "fsync); *raw* is one `SentenceTransformer.encode` call on the very texts that index "
        'embedded (title + ". " + passage), same model object, same batch size, normalized. '
        "*embed stage / raw* compares our embedding stage alone with raw on the same texts: "
        "ours sorts the passages by word pieces so a batch pads little; `encode` sorts by "
        f"characters. Cranfield: its first {CRANFIELD_FILES} abstracts.\n\n"
    )
    body += report.table(
        [
            "corpus",
            "files",
            "passages",
            "ours / raw throughput",
            "embed stage / raw",
            "ours word pieces/s (embed stage)",
            "raw word pieces/s",
            "ours s",
            "raw s",
            "read+clean+chunk s",
            "embed s",
            "store s",
        ],
        rows,
    )
    body += (
        "\n**Incremental update** (the same index; one sentence appended to 0 %, 1 % or 10 % of "
        "the files, then `rag.ingest.build` again). Updates re-embed only changed documents; the "
        "rest is fixed cost: hashing every file, copying the kept passages and vectors, and "
        "rewriting the SQLite, FAISS and BM25 files.\n\n"
    )
    urows = []
    for r in results:
        for u in r["updates"]:
            urows.append(
                [
                    r["name"],
                    f"{u['share']:.0%}",
                    u["files"],
                    u["embedded"],
                    round(u["seconds"], 2),
                    round(u["embed"], 2),
                    f"{u['vs_full']:.3f}×",
                ]
            )
    body += report.table(
        [
            "corpus",
            "changed",
            "files",
            "passages embedded",
            "seconds",
            "of which embed s",
            "vs full build",
        ],
        urows,
    )
    targets = [
        report.target(
            f"indexing throughput ≥ {TARGET}× raw encode ({r['name']})",
            [round(x, 4) for x in r["ratio"]],
            TARGET,
            f"ours {r['passages'] / statistics.median(r['ours_total']):.1f} passages/s, "
            f"raw {r['passages'] / statistics.median(r['raw']):.1f} passages/s "
            f"({r['passages']:,} passages)",
            higher=True,
        )
        for r in results
    ]
    big = max(results, key=lambda r: r["files"])
    one = next(u for u in big["updates"] if u["share"] == 0.01)
    targets.append(
        report.target(
            f"update after changing 1 % of the files takes seconds ({big['name']})",
            round(one["seconds"], 2),
            10.0,
            f"{one['files']} files, {one['embedded']} passages embedded in {one['seconds']:.2f} s "
            f"= {one['vs_full']:.3f}× the full build ({big['ours']['total']:.1f} s)",
        )
    )
    report.write_section(NAME, TITLE, body, targets, began=began)
    return {"results": results}
