"""The index on disk: versioned folders of a FAISS file, SQLite passages and a JSON manifest.

Layout of an index folder::

    INDEX_DIR/CURRENT          name of the live version (replaced atomically)
    INDEX_DIR/.lock            held by the one process that is rebuilding
    INDEX_DIR/v-<id>/          manifest.json, vectors.faiss, passages.sqlite

A rebuild writes a new version folder beside the live one and only then points CURRENT at it,
so a crash at any moment leaves the previous version whole and loadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import lexical
from .config import INDEX_TYPES
from .errors import IndexBusy, IndexCorrupt, IndexMismatch, IndexNotFound, RagError
from .types import Chunk

FORMAT = 1
# A filtered search over at most this many passages compares them one by one (exactly); above
# it, an approximate index searches with FAISS's id selector.
EXACT_FILTERED = 50_000
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.sqlite"

_SCHEMA = """
CREATE TABLE passages (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    text TEXT NOT NULL,
    original TEXT NOT NULL
);
CREATE INDEX passages_source ON passages(source);
"""


@dataclass(frozen=True)
class Version:
    """What one version folder holds, to be written in a single step."""

    manifest: dict
    chunks: Sequence[Chunk]
    vectors: np.ndarray  # float32, one unit row per chunk, row i = chunk id i
    # Writers of further parts (e.g. the lexical index), each given the new version's folder.
    extras: Sequence[Callable[[Path], None]] = ()


def faiss():  # noqa: ANN201 - imported lazily: faiss pulls in BLAS at import
    import faiss as _faiss

    return _faiss


class Index:
    """An open index version: FAISS vectors, passage rows and the manifest."""

    def __init__(self, root: Path, folder: Path, manifest: dict, vectors: object) -> None:
        self.root = root
        self.folder = folder
        self.manifest = manifest
        self.vectors = vectors
        self._db = sqlite3.connect(
            f"file:{folder / PASSAGES}?mode=ro", uri=True, check_same_thread=False
        )
        self._lock = threading.Lock()
        self.cache: dict[str, object] = {}  # parts other stages load once per version
        # An IVF-PQ index keeps its full vectors on disk, read as they are needed.
        exact = folder / EXACT_VECTORS
        self.exact = np.load(exact, mmap_mode="r") if exact.exists() else None

    @property
    def size(self) -> int:
        return int(self.vectors.ntotal)

    @property
    def version(self) -> str:
        return self.folder.name

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, inner product) of the k nearest passages to one unit query vector; with
        `allowed` (sorted passage ids), only those passages are ranked."""
        if self.size == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32)
        if self.exact is not None and (allowed is None or len(allowed) > EXACT_FILTERED):
            # Compressed codes find candidates; their full vectors rank them exactly.
            wide = k * PQ_RERANK
            params = self._filtered(allowed) if allowed is not None else None
            _, ids = self.vectors.search(query, wide, params=params)
            found = np.sort(ids[0][ids[0] >= 0])
            scores = self.reconstruct(found) @ query[0]
            top = np.argsort(-scores, kind="stable")[:k]
            return [(int(found[i]), float(scores[i])) for i in top]
        if allowed is None:
            scores, ids = self.vectors.search(query, k)
        elif len(allowed) == 0:
            return []
        elif len(allowed) <= EXACT_FILTERED or isinstance(self.vectors, faiss().IndexFlat):
            # Few passages: compared one by one, exact whatever the index type (an
            # approximate index probing a few lists could miss all of them).
            vectors = self.reconstruct(allowed)
            scores = vectors @ query[0]
            top = np.argsort(-scores, kind="stable")[:k]
            return [(int(allowed[i]), float(scores[i])) for i in top]
        else:
            scores, ids = self.vectors.search(query, k, params=self._filtered(allowed))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def _filtered(self, allowed: np.ndarray) -> object:
        """FAISS search parameters ranking only `allowed`, keeping the index's own nprobe or
        efSearch (FAISS's parameter objects would otherwise reset them to their defaults)."""
        f = faiss()
        selector = f.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if isinstance(self.vectors, f.IndexHNSW):
            return f.SearchParametersHNSW(sel=selector, efSearch=self.vectors.hnsw.efSearch)
        ivf = f.extract_index_ivf(self.vectors)
        return f.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)

    def chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """Passages by id, in the order asked."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f'SELECT id, source, title, start, "end", text, original, page '
                f"FROM passages WHERE id IN ({marks})",
                list(ids),
            ).fetchall()
        by_id = {r[0]: Chunk(*r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def all_chunks(self) -> Iterator[Chunk]:
        """Every passage in id order."""
        with self._lock:
            rows = self._db.execute(
                'SELECT id, source, title, start, "end", text, original, page '
                "FROM passages ORDER BY id"
            ).fetchall()
        for r in rows:
            yield Chunk(*r)

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of some passages (to reuse them in an incremental rebuild)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.vectors.d), dtype=np.float32)
        if self.exact is not None:
            return np.asarray(self.exact[ids], dtype=np.float32)
        # Runs of consecutive ids (a document's passages) are read with one call each.
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        parts = [
            np.asarray(self.vectors.reconstruct_n(int(run[0]), len(run)), dtype=np.float32)
            if len(run) > 1
            else np.asarray(self.vectors.reconstruct(int(run[0])), dtype=np.float32)[None]
            for run in np.split(ids, breaks)
        ]
        return np.vstack(parts)

    def words(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the k best passages sharing a word with the query; with
        `allowed` (sorted passage ids), only those passages are ranked."""
        return lexical.search(self._bm25(), query, k, self.size, allowed)

    def vocabulary(self) -> Container[str]:
        """Every stemmed word the lexical index knows: what the documents ever say."""
        return self._bm25().vocab_dict

    def _bm25(self):  # noqa: ANN202 - bm25s.BM25, loaded once per version
        model = self.cache.get("bm25")
        if model is not None:
            return model
        folder = self.folder / lexical.FOLDER
        try:
            if folder.is_dir() and lexical.saved_version(folder) != lexical.VERSION:
                # Written by an older tokenizer: its words would not match the question's.
                # Rebuilt from the stored passages in memory; the next `rag index` saves it.
                model = lexical.build([c.text for c in self.all_chunks()])
            else:
                model = lexical.load(folder)
        except Exception as exc:  # missing or damaged arrays
            raise IndexCorrupt(
                f"the lexical index {folder} is unreadable ({exc}): "
                f"run `rag index --full --index-dir {self.root}`"
            ) from exc
        self.cache["bm25"] = model
        return model

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Local:
    """The default store: index versions in a folder on this machine (see the module's text).
    The Milvus store (`rag.cluster.milvus.Store`) has the same methods."""

    kind = "faiss"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def lock(self) -> contextlib.AbstractContextManager:
        return rebuild_lock(self.root)

    def tidy(self) -> list[str]:
        return tidy(self.root) if self.root.is_dir() else []

    def live(self) -> str | None:
        """The name of the live version, or None when there is no index yet."""
        folder = current_folder(self.root)
        return folder.name if folder is not None else None

    def load(self) -> Index:
        return load(self.root)

    def manifest(self) -> dict:
        """The live version's manifest, without opening its vectors."""
        folder = current_folder(self.root)
        if folder is None:
            raise IndexNotFound(f"no index at {self.root}")
        return read_manifest(folder)

    def write(self, version: Version, index_type: str, previous: Index | None) -> str:
        return write(self.root, version, index_type, previous).name


def open_store(config: object) -> object:
    """The store a configuration names: `Config.store` empty is the FAISS folder
    `Config.index_dir`; "milvus:PATH.db" or "milvus://HOST:PORT/NAME" is a Milvus store."""
    if getattr(config, "store", ""):
        from .cluster import milvus

        return milvus.Store.from_config(config)
    return Local(config.index_dir)


# Fault injection, for tests only: a function called with the name of each point where a
# rebuild can be stopped ("embedding", "writing", "swap"). None in normal use, so a shipped
# rebuild never waits; tests/held_rebuild.py sets it in its own process.
fault_hook: Callable[[str], None] | None = None


def fault_point(name: str) -> None:
    """A point where a fault-injection test may stop a rebuild; nothing happens otherwise."""
    if fault_hook is not None:
        fault_hook(name)


def current_folder(root: Path) -> Path | None:
    """The live version folder of an index, or None when there is none yet."""
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexCorrupt(f"cannot read {pointer}: {exc}") from exc
    if not name or "/" in name or name.startswith("."):
        raise IndexCorrupt(f"{pointer} is damaged: run `rag index --full --index-dir {root}`")
    return root / name


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorrupt(f"the index manifest {folder / MANIFEST} is missing") from exc
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"the index manifest {folder / MANIFEST} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexMismatch(
            f"{folder} was written in another index format "
            f"({manifest.get('format') if isinstance(manifest, dict) else '?'}, "
            f"this version reads {FORMAT})"
        )
    return manifest


def load(root: Path | str) -> Index:
    """Open the live version of an index, checking its files against the manifest."""
    root = Path(root)
    hint = f"run `rag index PATHS --index-dir {root}`"
    folder = current_folder(root)
    if folder is None:
        raise IndexNotFound(f"no index at {root}: {hint}")
    fix = f"run `rag index --full --index-dir {root}` to rebuild it"
    if not folder.is_dir():
        raise IndexCorrupt(
            f"the index at {root} points at a missing version ({folder.name}): {fix}"
        )
    try:
        manifest = read_manifest(folder)
    except IndexCorrupt as exc:
        raise IndexCorrupt(f"{exc}: {fix}") from exc
    try:
        vectors = faiss().read_index(str(folder / VECTORS))
    except Exception as exc:  # faiss raises RuntimeError with C++ text
        raise IndexCorrupt(f"the vector file {folder / VECTORS} is unreadable: {fix}") from exc
    if vectors.d != manifest.get("dim") or vectors.ntotal != manifest.get("chunks"):
        raise IndexCorrupt(
            f"the vector file in {folder} holds {vectors.ntotal}×{vectors.d} vectors, the "
            f"manifest expects {manifest.get('chunks')}×{manifest.get('dim')}: {fix}"
        )
    try:
        index = Index(root, folder, manifest, vectors)
        (rows,) = index._db.execute("SELECT count(*) FROM passages").fetchone()
    except sqlite3.Error as exc:
        raise IndexCorrupt(f"the passage table in {folder} is unreadable ({exc}): {fix}") from exc
    if rows != vectors.ntotal:
        index.close()
        raise IndexCorrupt(f"{folder} holds {rows} passages for {vectors.ntotal} vectors: {fix}")
    return index


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# How the vectors are searched. "flat" compares the question with every passage (exact);
# "ivf" and "hnsw" are approximate and much faster on large indexes (docs/BENCHMARKS.md,
# "Retrieval latency and scale"); "auto" is flat below APPROXIMATE_FROM passages, IVF above.
# "ivfpq" keeps only PQ_BYTES per vector in memory (IVF lists of product-quantised codes) and
# re-ranks the best PQ_RERANK × k candidates exactly from full vectors memory-mapped from disk
# (EXACT_VECTORS, float16): for corpora whose vectors no longer fit in memory (docs/SCALE.md).
APPROXIMATE_FROM = 200_000
# Share of the IVF lists scanned per question: a quarter reaches recall@10 ≥ 0.95 against exact
# search at a million passages even on vectors harder to cluster than real text (see
# docs/BENCHMARKS.md, "Retrieval latency and scale"), still about 3× faster than exact search.
IVF_PROBE_SHARE = 1 / 4
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
PQ_BYTES = 48  # 8-bit codes of 48 sub-vectors of 8 dimensions (for 384): 32× less than float32
PQ_RERANK = 10
EXACT_VECTORS = "vectors.f16.npy"


def index_type_for(setting: str, count: int) -> str:
    """The index type a setting means for an index of `count` passages."""
    if setting not in INDEX_TYPES:
        raise RagError(f"unknown index type {setting!r}: use one of {', '.join(INDEX_TYPES)}")
    if setting == "auto":
        return "flat" if count < APPROXIMATE_FROM else "ivf"
    if setting == "ivfpq" and count < PQ_MIN_POINTS:
        return "flat"  # too few passages to learn the codes from
    if setting == "ivf" and count < 2 * _IVF_MIN_POINTS:
        return "flat"  # too few passages to learn lists from; exact search is instant anyway
    return setting


_IVF_MIN_POINTS = 39  # FAISS wants at least this many training points per list
PQ_MIN_POINTS = 10_000  # 256 codes per sub-vector need this many points to learn them well


def ivf_lists(count: int) -> int:
    """Number of IVF lists for `count` vectors: about 2 √n (2,000 at a million: learning them
    takes about a minute on 2 cores), with enough points to learn each."""
    return max(1, min(int(2 * count**0.5), count // _IVF_MIN_POINTS))


def make_vectors(vectors: np.ndarray, kind: str, previous: object | None = None) -> object:
    """A FAISS index of one kind ("flat", "ivf" or "hnsw") holding the unit rows of `vectors`.

    For "ivf", the lists of a `previous` IVF index are reused when they still suit the new size,
    so an update spends no time learning them again (adding is fast; learning is not).
    """
    f = faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if kind == "hnsw":
        index = f.IndexHNSWFlat(dim, HNSW_M, f.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivfpq":
        nlist = ivf_lists(count)
        quantizer = f.IndexFlatIP(dim)
        codes = PQ_BYTES if dim % PQ_BYTES == 0 else dim // 8 or 1
        index = f.IndexIVFPQ(quantizer, dim, nlist, codes, 8, f.METRIC_INNER_PRODUCT)
        rows = np.random.default_rng(0).choice(
            count, min(count, max(nlist, 256) * 50), replace=False
        )
        index.train(vectors[np.sort(rows)])
        index.nprobe = max(1, round(nlist * IVF_PROBE_SHARE))
    elif kind == "ivf":
        nlist = ivf_lists(count)
        quantizer = _reusable_lists(previous, dim, nlist)
        if quantizer is None:
            quantizer = f.IndexFlatIP(dim)
            index = f.IndexIVFFlat(quantizer, dim, nlist, f.METRIC_INNER_PRODUCT)
            sample = vectors
            if count > nlist * 50:  # k-means on a sample: as good, and minutes faster
                rows = np.random.default_rng(0).choice(count, nlist * 50, replace=False)
                sample = vectors[np.sort(rows)]
            index.train(sample)
        else:
            index = f.IndexIVFFlat(quantizer, dim, quantizer.ntotal, f.METRIC_INNER_PRODUCT)
        index.nprobe = max(1, round(index.nlist * IVF_PROBE_SHARE))
        index.make_direct_map()  # passages are also read back by id (reconstruct)
    elif kind == "flat":
        index = f.IndexFlatIP(dim)
    else:
        raise RagError(f"unknown index type {kind!r}: use one of {', '.join(INDEX_TYPES[1:])}")
    if count:
        index.add(vectors)
    return index


def _reusable_lists(previous: object | None, dim: int, nlist: int) -> object | None:
    """A copy of the learned lists (centroids) of a previous IVF index, if they still fit."""
    if previous is None:
        return None
    f = faiss()
    try:
        ivf = f.extract_index_ivf(previous)
    except RuntimeError:  # not an IVF index
        return None
    if ivf.d != dim or not nlist / 2 <= ivf.nlist <= nlist * 2:
        return None
    return f.clone_index(ivf.quantizer)


def write(
    root: Path, version: Version, index_type: str = "flat", previous: Index | None = None
) -> Path:
    """Write a complete new version beside the live one, then make it live atomically.

    `index_type` is a setting of INDEX_TYPES ("auto" picks by size); `previous`, the live
    version, lends its learned IVF lists to the new one.
    """
    kind = index_type_for(index_type, len(version.chunks))
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        manifest = dict(version.manifest, format=FORMAT, chunks=len(version.chunks))
        manifest["dim"] = int(version.vectors.shape[1]) if version.vectors.ndim == 2 else 0
        manifest["index_type"] = kind
        manifest["index_type_setting"] = index_type
        db = sqlite3.connect(tmp / PASSAGES)
        try:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?)",
                [
                    (c.id, c.source, c.title, c.start, c.end, c.page, c.text, c.original)
                    for c in version.chunks
                ],
            )
            db.commit()
        finally:
            db.close()
        fault_point("writing")
        vectors = make_vectors(
            version.vectors, kind, previous.vectors if previous is not None else None
        )
        manifest["index_params"] = _params(vectors)
        faiss().write_index(vectors, str(tmp / VECTORS))
        if kind == "ivfpq":  # the exact vectors the codes are re-ranked with, read on demand
            np.save(tmp / EXACT_VECTORS, version.vectors.astype(np.float16))
        for extra in version.extras:
            extra(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), "utf-8")
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        name = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        os.rename(tmp, root / name)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("swap")
    pointer = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    pointer.write_text(name + "\n", encoding="utf-8")
    with open(pointer, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(pointer, root / CURRENT)  # the swap: atomic on POSIX
    _fsync_dir(root)
    tidy(root)
    return root / name


def _params(vectors: object) -> dict:
    """The search settings of a FAISS index, for the manifest."""
    f = faiss()
    if isinstance(vectors, f.IndexHNSW):
        return {"M": HNSW_M, "efConstruction": vectors.hnsw.efConstruction,
                "efSearch": vectors.hnsw.efSearch}  # fmt: skip
    if isinstance(vectors, f.IndexIVFPQ):
        return {"nlist": int(vectors.nlist), "nprobe": int(vectors.nprobe),
                "pq_bytes": int(vectors.pq.M), "rerank": PQ_RERANK}  # fmt: skip
    if isinstance(vectors, f.IndexIVF):
        return {"nlist": int(vectors.nlist), "nprobe": int(vectors.nprobe)}
    return {}


def tidy(root: Path) -> list[str]:
    """Remove what interrupted or superseded rebuilds left behind; keep the live version."""
    live = current_folder(root)
    removed = []
    for entry in root.iterdir():
        stray_dir = entry.is_dir() and (entry.name.startswith((".tmp-", "v-")))
        stray_file = entry.is_file() and entry.name.startswith(f".{CURRENT}.")
        if (stray_dir and (live is None or entry.name != live.name)) or stray_file:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def rebuild_lock(root: Path) -> Iterator[None]:
    """Hold the index's rebuild lock; a second rebuild at the same time is refused."""
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock", str(root)):
        yield


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` for the rebuild of `what`, or refuse."""
    fh = open(path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexBusy(
                f"another rebuild of {what} is running; wait for it to finish and try again"
            ) from exc
        yield
    finally:
        fh.close()  # closing the file releases the lock, also when the process dies
