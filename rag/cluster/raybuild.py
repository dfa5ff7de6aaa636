"""Index builds on Ray: reading, cleaning, cutting and embedding run as Ray Data stages.

The driver (the process running `rag index --ray`) decides which files are new or changed,
exactly as a local build does, and sends only those to the cluster, each file's bytes with it
(workers need no shared file system, only this package and the embedding model installed).
Two stages run there:

- `Cutter` actors read, clean and cut each file into passages (the embedding model's tokenizer
  measures them, as in a local build);
- `Encoder` actors embed the passages in batches, one actor per CPU (or GPU) they may hold.

The passages and vectors come back to the driver, which writes the index version as a local
build does (`rag.ingest`): the same passages, the same manifest, vectors equal within float
rounding. A worker that dies is restarted and its batch retried by Ray; a build that fails
raises before the new version is written, so the live index is untouched.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import embed, ingest, read
from ..config import Config
from ..errors import RagError
from ..types import Chunk

FILES_PER_BATCH = 4  # files a Cutter reads per call: small, so a big file does not stall others
PASSAGES_PER_BATCH = 256  # passages an Encoder embeds per call
RETRIES = 3  # times Ray restarts a dead worker and retries its batch
_COLUMNS = ("order", "n", "error", "title", "pages", "start", "end", "page", "text", "original")


def connect(address: str) -> dict:
    """Join the Ray cluster at `address` ("local": start one on this machine with its CPUs),
    once per process; an already connected process keeps its connection. Returns the
    cluster's resources."""
    try:
        import ray
    except ImportError as exc:
        raise RagError("Ray is not installed: run `pip install 'rag[cluster]'`") from exc
    if not ray.is_initialized():
        # The workers find the embedding model as the driver does (offline when it is).
        env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "RAG_MODELS_DIR") if k in os.environ}
        env["TOKENIZERS_PARALLELISM"] = "false"
        options: dict = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
        if address == "local":
            options |= {"num_cpus": os.cpu_count() or 1, "include_dashboard": False}
        else:
            options["address"] = address
        try:
            ray.init(**options)
        except Exception as exc:  # ConnectionError, a timeout, a bad address
            raise RagError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
    return ray.cluster_resources()


class Cutter:
    """A Ray actor: files (their bytes) in, one row per passage out (a file that cannot be
    indexed gives one row with n = -1 and the reason in `error`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.embedder = embed.load(config.embed_model, config.batch_size, 1)
        self.scans = read.ocr.Options(languages=config.ocr_languages, cache=config.ocr_cache)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows: dict[str, list] = {name: [] for name in _COLUMNS}

        def add(**row: object) -> None:
            for name in _COLUMNS:
                rows[name].append(row.get(name, ""))

        for order, source, data in zip(batch["order"], batch["source"], batch["data"]):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, source)  # the same relative name, so the same source and title
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes(data))
                result = ingest.cut(path, Path(tmp), self.config, self.embedder, self.scans)
            if isinstance(result, str):
                add(order=int(order), n=-1, error=result, pages=0, start=0, end=0, page=-1)
                continue
            for n, c in enumerate(result.chunks):
                page = -1 if c.page is None else c.page
                add(order=int(order), n=n, title=c.title, pages=result.pages, start=c.start,
                    end=c.end, page=page, text=c.text, original=c.original)  # fmt: skip
        return rows


class Encoder:
    """A Ray actor: passage rows in, the same rows with their unit `vector` out."""

    def __init__(self, config: Config, threads: int) -> None:
        self.embedder = embed.load(config.embed_model, config.batch_size, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = np.flatnonzero(np.asarray(batch["n"]) >= 0)
        vectors = np.zeros((len(batch["n"]), self.embedder.dim), dtype=np.float32)
        if len(keep):
            texts = [_vector_text(batch, i) for i in keep]
            vectors[keep] = self.embedder.encode(texts)
        batch["vector"] = vectors
        return batch


def _vector_text(batch: dict[str, np.ndarray], i: int) -> str:
    chunk = Chunk(0, "", str(batch["title"][i]), 0, 0, str(batch["text"][i]), "", None)
    return ingest.vector_text(chunk)


def process(
    fresh: Sequence[tuple[str, str, Path, float]],
    base: Path,
    config: Config,
    progress: ingest.Progress | None = None,
    stages: tuple[type, type] | None = None,
) -> tuple[dict[str, ingest.Cut | str], np.ndarray]:
    """New and changed files (source, sha256, path, modified) read, cut and embedded on the Ray
    cluster `config.ray`: each source's `ingest.Cut` (or why it was skipped) in the order
    given, and the vectors of all their passages in that order, as `ingest._process` gives.

    `stages` are the actor classes, `Cutter` and `Encoder` by default (a test swaps in one that
    dies, to see Ray retry it)."""
    import ray.data

    resources = connect(config.ray)
    # Ray Data's own progress bars on a terminal; its per-stage log lines not at all.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    cpus = max(1, int(resources.get("CPU", 1)))
    cutter, encoder = stages or (Cutter, Encoder)
    items = []
    for order, (source, _sha, path, _modified) in enumerate(fresh):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise RagError(f"cannot read {path}: {exc.strerror or exc}") from exc
        items.append({"order": order, "source": source, "data": data})
    if progress:
        progress("embedding", 0, 0)
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items) // FILES_PER_BATCH))
    ds = ds.map_batches(
        cutter,
        fn_constructor_kwargs={"config": config},
        batch_size=FILES_PER_BATCH,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
        num_cpus=0,  # light beside embedding: the CPUs are the encoders''
        ray_remote_args_fn=_retries,
    )
    ds = ds.map_batches(
        encoder,
        fn_constructor_kwargs={"config": config, "threads": 1},
        batch_size=PASSAGES_PER_BATCH,
        compute=ray.data.ActorPoolStrategy(size=cpus),
        num_cpus=1,
        ray_remote_args_fn=_retries,
    )
    try:
        batches = list(ds.iter_batches(batch_format="numpy", batch_size=None))
    except Exception as exc:  # a stage failed more often than Ray retries it
        raise RagError(f"the Ray build failed: {exc}") from exc
    return _collect(fresh, batches)


def _retries() -> dict:
    """Each actor's restarts and each batch's retries (Ray Data's default is forever, so a
    batch that always kills its worker would hang the build)."""
    return {"max_restarts": RETRIES, "max_task_retries": RETRIES}


def _collect(
    fresh: Sequence[tuple[str, str, Path, float]], batches: list[dict[str, np.ndarray]]
) -> tuple[dict[str, ingest.Cut | str], np.ndarray]:
    """The rows the cluster returned, in any order, put back into file and passage order."""
    rows = [(int(b["order"][i]), int(b["n"][i]), b, i) for b in batches for i in range(len(b["n"]))]
    rows.sort(key=lambda r: (r[0], r[1]))
    results: dict[str, ingest.Cut | str] = {}
    vectors = []
    by_file: dict[int, list] = {}
    for order, n, b, i in rows:
        by_file.setdefault(order, []).append((n, b, i))
    for order, (source, *_rest) in enumerate(fresh):
        got = by_file.get(order)
        if not got:
            results[source] = "no result from the Ray build"
            continue
        if got[0][0] < 0:
            results[source] = str(got[0][1]["error"][got[0][2]])
            continue
        chunks = []
        for n, b, i in got:
            page = int(b["page"][i])
            chunks.append(
                Chunk(n, source, str(b["title"][i]), int(b["start"][i]), int(b["end"][i]),
                      str(b["text"][i]), str(b["original"][i]), None if page < 0 else page)
            )  # fmt: skip
            vectors.append(b["vector"][i])
        results[source] = ingest.Cut(chunks[0].title, int(got[0][1]["pages"][got[0][2]]), chunks)
    matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
    return results, matrix
