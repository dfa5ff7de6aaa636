"""A real corpus of at least 100,000 passages, embedded once and kept outside the repository,
for the rows of the retrieval benchmark that use real passage vectors.

Source: the HTML documentation that ships with the Rust toolchain (rustup's
`share/doc/rust/html`: the Rust books, the reference, the standard library's API pages and
more), or any folder given by `RAG_BENCH_REAL_DOCS`. Its files are read in sorted order by rag's
own reader, cleaned and cut into passages by rag's chunker and embedded by the shipped embedding
model, at the shipped settings, until TARGET passages. The work is kept in shards in the
benchmark cache (`~/.cache/rag/bench/real-docs/`), so an interrupted run goes on where it
stopped; a change of the settings that shape passages and vectors starts it anew.

    python -m bench.realcorpus             # build it (about an hour and a quarter on 2 cores)
    python -m bench.realcorpus --target 500 --folder /tmp/try   # a small trial
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TARGET = 101_100  # passages: 100k+ in the store once every 100th is held out as a question
SHARD = 4096  # passages embedded and written at a time
SKIP = {"src", "static.files", "search.index", "trait.impl", "type.impl"}  # code views, indexes


def cache() -> Path:
    from rag import Config

    return Path(Config.load().models_dir).parent / "bench" / "real-docs"


def source() -> Path | None:
    """The documentation folder: RAG_BENCH_REAL_DOCS, else the newest rustup toolchain's."""
    given = os.environ.get("RAG_BENCH_REAL_DOCS")
    if given:
        return Path(given)
    found = sorted(Path.home().glob(".rustup/toolchains/*/share/doc/rust/html"))
    stable = [p for p in found if "stable" in str(p)]
    return (stable or found or [None])[-1]


def files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.html")):
        if not SKIP & set(path.relative_to(root).parts):
            yield path


def build(target: int = TARGET, folder: Path | None = None, root: Path | None = None) -> Path:
    """Read, cut and embed documents of `root` into shards in `folder` until `target`
    passages; returns the folder. Resumes from the shards already written."""
    from rag import Config, embed, ingest, read
    from rag.errors import RagError

    root = root or source()
    if root is None or not root.is_dir():
        raise SystemExit(
            "no documentation folder: install a Rust toolchain or set RAG_BENCH_REAL_DOCS"
        )
    folder = folder or cache()
    folder.mkdir(parents=True, exist_ok=True)
    config = Config.load()
    wanted = {"settings": ingest.settings(config), "source": str(root)}
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if {k: meta.get(k) for k in wanted} != wanted:
        for old in folder.glob("shard-*"):
            old.unlink()
        meta = {**wanted, "files_done": 0, "passages": 0, "shards": 0, "skipped": 0}
    embedder = embed.load(config.embed_model, config.batch_size, config.threads)
    pending: list[str] = []
    paths = list(files(root))

    def flush(files_done: int) -> None:
        n = meta["shards"]
        vectors = embedder.encode(pending)
        np.save(folder / f"shard-{n:04d}.npy", vectors)
        (folder / f"shard-{n:04d}.jsonl").write_text(
            "".join(json.dumps(t) + "\n" for t in pending), encoding="utf-8"
        )
        meta.update(shards=n + 1, passages=meta["passages"] + len(pending), files_done=files_done)
        meta_path.write_text(json.dumps(meta, indent=1))
        print(f"{meta['passages']:,} passages from {files_done:,} files", file=sys.stderr)
        pending.clear()

    done = meta["files_done"]
    first_error = ""
    while done < len(paths) and meta["passages"] + len(pending) < target:
        path, done = paths[done], done + 1
        try:
            doc = read.read(path, root)
        except (RagError, OSError, ValueError) as error:
            meta["skipped"] += 1
            first_error = first_error or f"{path}: {error}"
            continue
        pending += [ingest.vector_text(c) for c in ingest.passages(doc, embedder, config, 0)]
        if len(pending) >= SHARD:
            flush(done)
    if pending:
        flush(done)
    if meta["passages"] < target and meta["skipped"] > done // 2:
        # Most files unreadable means a broken installation, not a corpus: never cache it.
        meta_path.unlink(missing_ok=True)
        raise SystemExit(
            f"only {meta['passages']:,} passages: {meta['skipped']:,} of {done:,} files "
            f"could not be read, the first: {first_error}"
        )
    meta["complete"] = True
    meta_path.write_text(json.dumps(meta, indent=1))
    return folder


def load(folder: Path | None = None) -> tuple[np.ndarray, list[str], dict] | None:
    """(vectors, passage texts, meta) of a finished corpus at the shipped settings, or None."""
    from rag import Config, ingest

    folder = folder or cache()
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if not meta.get("complete") or meta.get("settings") != ingest.settings(Config.load()):
        return None
    shards = sorted(folder.glob("shard-*.npy"))
    vectors = np.vstack([np.load(s) for s in shards]).astype(np.float32)
    texts = [
        json.loads(line)
        for s in shards
        for line in s.with_suffix(".jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return vectors, texts, meta


def held_out(
    vectors: np.ndarray, texts: list[str], every: int = 100
) -> tuple[np.ndarray, list[str]]:
    """(the store without every `every`-th passage, the first sentence of six words or more of
    each of those as a question): questions that real text answers, none of them in the store
    itself."""
    from rag.chunk import sentences

    keep = np.ones(len(texts), dtype=bool)
    keep[::every] = False
    questions = []
    for text in texts[::every]:
        body = text.split(". ", 1)[-1]  # after the title put in front of each passage
        said = [body[a:b] for a, b in sentences(body)]
        # The first sentence of six words or more (a lone "All" or a code line asks nothing).
        questions.append(next((x for x in said if len(x.split()) >= 6), body[:200]))
    return vectors[keep], questions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.realcorpus", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", type=int, default=TARGET, help="passages to embed")
    parser.add_argument("--folder", type=Path, help="where to keep it (default: the bench cache)")
    args = parser.parse_args(argv)
    folder = build(args.target, args.folder)
    meta = json.loads((folder / "meta.json").read_text())
    print(
        f"{meta['passages']:,} passages from {meta['files_done']:,} files of {meta['source']} in {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
