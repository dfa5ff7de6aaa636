"""The Milvus store: passages, vectors and the manifest kept in Milvus through `pymilvus`.

One client code for Milvus Lite (a file, "milvus:PATH.db") and a Milvus server or cluster
("milvus://HOST:PORT/NAME"; its token, if it asks for one, from RAG_MILVUS_TOKEN).

Layout, for a store named NAME (the URI's last part; "rag" for a Lite file)::

    NAME                       an alias: the live version, switched atomically by a rebuild
    NAME__v<time>_<id>         one collection per version: id, vector, text, words, ... and
                               `sparse`, Milvus's own BM25 over `words`
    NAME__meta                 the manifest and the lexical vocabulary of each version, as
                               JSON pieces keyed "<version>/<n>"

A rebuild writes a whole new version collection and its meta rows, then points the alias at
it; a build killed before that leaves only a collection no alias names, which the next build
drops. `words` holds the passage's words as our lexical index cuts them (accents and case
folded, stemmed, stop words dropped), so Milvus's full-text search ranks the same words as the
local BM25 whatever analyzers the deployment has. A deployment without full-text search (Milvus
before 2.5) gets the local BM25 (`rag.lexical`) beside it, built in memory from the passages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Container, Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import lexical, store
from ..errors import IndexCorrupt, IndexMismatch, IndexNotFound, RagError
from ..types import Chunk

DEFAULT_NAME = "rag"
INSERT_ROWS = 2_000  # rows per insert call
META_PIECE = 60_000  # characters of JSON per meta row (a VARCHAR holds at most 65,535 bytes)
TEXT_BYTES = 65_535  # the longest passage text a VARCHAR field holds
# BM25's term-frequency saturation and length normalisation as the local index has them
# (bm25s's defaults), so both stores rank the same words alike.
BM25_PARAMS = {"bm25_k1": 1.5, "bm25_b": 0.75}
_OUT = ["id", "source", "title", "start", "end", "text", "original", "page"]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client(uri: str, token: str) -> object:
    """One pymilvus client per URI and process (Milvus Lite runs one server per file)."""
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise RagError("pymilvus is not installed: run `pip install 'rag[cluster]'`") from exc
    with _clients_lock:
        if uri not in _clients:
            try:
                _clients[uri] = MilvusClient(uri=uri, token=token)
            except Exception as exc:  # unreachable server, a Lite file another process holds
                raise RagError(f"cannot open the Milvus store {uri}: {exc}") from exc
        return _clients[uri]


def parse(spec: str) -> tuple[str, str]:
    """(client URI, store name) of "milvus:PATH.db[#NAME]" or "milvus://HOST:PORT/NAME"."""
    if spec.startswith("milvus://"):
        hostport, _, name = spec[len("milvus://") :].partition("/")
        uri = f"http://{hostport}"
    elif spec.startswith("milvus:"):
        path, _, name = spec[len("milvus:") :].partition("#")
        if not path.endswith(".db"):
            raise RagError(f"a Milvus Lite store is a file ending in .db, not {path!r}")
        uri = str(Path(path).expanduser().resolve())
    else:
        raise RagError(
            f"unknown store {spec!r}: use milvus:PATH.db or milvus://HOST:PORT/NAME "
            "(or nothing, for the FAISS folder --index-dir)"
        )
    name = name or DEFAULT_NAME
    if not _NAME.fullmatch(name):
        raise RagError(f"{name!r} cannot name a Milvus store: use letters, digits and _")
    return uri, name


def beside(spec: str, lite_file: Path, name: str) -> str:
    """A store of its own next to `spec`: the Lite file `lite_file` for a Lite store, the
    store `name` on the same server for a server."""
    if spec.startswith("milvus://"):
        return f"{spec.rsplit('/', 1)[0] if spec.count('/') > 2 else spec}/{name}"
    return f"milvus:{lite_file}"


class Store:
    """A Milvus store with the methods of `rag.store.Local`: lock, tidy, live, load, write."""

    kind = "milvus"
    # Tried in this order: with Milvus's BM25 function, then without (Milvus before 2.5).
    FULL_TEXT = (True, False)

    def __init__(self, spec: str, token: str = "", collection: str = "default") -> None:
        self.spec = spec
        self.uri, name = parse(spec)
        if collection != "default":  # a named workspace collection: a store of its own
            name = f"{name}_{collection.replace('-', '_')}"
        self.name = name
        self.token = token
        self.meta = f"{name}__meta"
        self.lite = not self.uri.startswith("http")

    @classmethod
    def from_config(cls, config: object) -> Store:
        import os

        token = os.environ.get("RAG_MILVUS_TOKEN", "")
        return cls(config.store, token, getattr(config, "collection", "default"))

    def __str__(self) -> str:
        return f"{self.spec} ({self.name})"

    @property
    def client(self) -> object:
        return _client(self.uri, self.token)

    # -- the rebuild lock and leftovers -----------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One rebuild at a time. The lock is a file beside a Lite store, or in the cache for a
        server: it keeps out rebuilds from this machine, not from others."""
        if self.lite:
            path = Path(f"{self.uri}.{self.name}.lock")
        else:
            key = hashlib.sha256(f"{self.uri}/{self.name}".encode()).hexdigest()[:16]
            path = Path.home() / ".cache" / "rag" / "locks" / f"milvus-{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with store.file_lock(path, str(self)):
            yield

    def versions(self) -> list[str]:
        prefix = f"{self.name}__v"
        return sorted(c for c in self.client.list_collections() if c.startswith(prefix))

    def live(self) -> str | None:
        """The collection the alias names, or None when there is no index yet."""
        try:
            if self.name not in self.client.list_aliases().get("aliases", []):
                return None
            return self.client.describe_alias(self.name)["collection_name"]
        except RagError:
            raise
        except Exception as exc:
            raise IndexCorrupt(f"cannot read the Milvus store {self}: {exc}") from exc

    def tidy(self, keep: Sequence[str] = ()) -> list[str]:
        """Drop versions no alias names (left by killed or superseded rebuilds), and their
        meta rows; keep the live version and `keep`."""
        live = self.live()
        dropped = [v for v in self.versions() if v != live and v not in keep]
        for version in dropped:
            self.client.drop_collection(version)
            if self.client.has_collection(self.meta):
                self.client.load_collection(self.meta)
                self.client.delete(self.meta, filter=f'key like "{version}/%"')
        return dropped

    # -- reading ----------------------------------------------------------------------------

    def load(self) -> MilvusIndex:
        """The live version, checked against its manifest."""
        live = self.live()
        if live is None:
            raise IndexNotFound(f"no index in {self}: run `rag index PATHS --store {self.spec}`")
        fix = f"run `rag index --full --store {self.spec}` to rebuild it"
        if not self.client.has_collection(live):
            raise IndexCorrupt(f"{self} points at a missing version ({live}): {fix}")
        meta = self._read_meta(live)
        if meta is None:
            raise IndexCorrupt(f"the manifest of {live} in {self} is missing: {fix}")
        manifest = meta["manifest"]
        if manifest.get("format") != store.FORMAT:
            raise IndexMismatch(f"{live} was written in another index format: {fix}")
        self.client.load_collection(live)
        rows = int(self.client.get_collection_stats(live)["row_count"])
        if rows != manifest.get("chunks"):
            raise IndexCorrupt(f"{live} holds {rows} passages, its manifest {manifest['chunks']}")
        return MilvusIndex(self, live, manifest, set(meta["vocabulary"]))

    def manifest(self) -> dict:
        """The live version's manifest."""
        live = self.live()
        meta = self._read_meta(live) if live else None
        if meta is None:
            raise IndexNotFound(f"no index in {self}")
        return meta["manifest"]

    def _read_meta(self, version: str) -> dict | None:
        if not self.client.has_collection(self.meta):
            return None
        self.client.load_collection(self.meta)  # a collection is "released" in a new process
        rows = self.client.query(
            self.meta, filter=f'key like "{version}/%"', output_fields=["key", "piece"]
        )
        if not rows:
            return None
        rows.sort(key=lambda r: r["key"])
        try:
            return json.loads("".join(r["piece"] for r in rows))
        except ValueError as exc:
            raise IndexCorrupt(f"the manifest of {version} in {self} is damaged: {exc}") from exc

    # -- writing ----------------------------------------------------------------------------

    def write(self, version: store.Version, index_type: str, previous: object | None) -> str:
        """Write a complete new version collection, then switch the alias to it.

        `index_type` and `previous` are the FAISS store's; Milvus indexes its own way (exact
        FLAT in Milvus Lite, AUTOINDEX on a server). `version.extras` (FAISS folder parts) are
        not written: the lexical part here is Milvus's own."""
        del index_type, previous
        client = self.client
        name = f"{self.name}__v{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}"
        dim = int(version.vectors.shape[1]) if version.vectors.ndim == 2 else 0
        chunks = version.chunks
        words = [" ".join(t) for t in lexical.tokenize([c.text for c in chunks])]
        full_text = self._create(name, dim)
        try:
            for start in range(0, len(chunks), INSERT_ROWS):
                part = slice(start, start + INSERT_ROWS)
                client.insert(name, [
                    _row(c, v, w) for c, v, w in zip(chunks[part], version.vectors[part], words[part])
                ])  # fmt: skip
                store.fault_point("writing")
            client.flush(name)
            vocabulary = sorted({w for line in words for w in line.split()})
            manifest = dict(version.manifest, format=store.FORMAT, chunks=len(chunks), dim=dim)
            manifest |= {"index_type": "milvus", "index_type_setting": "milvus",
                         "index_params": {"full_text": full_text, "lite": self.lite}}  # fmt: skip
            self._write_meta(name, {"manifest": manifest, "vocabulary": vocabulary})
        except BaseException:
            with contextlib.suppress(Exception):
                client.drop_collection(name)
            raise
        store.fault_point("swap")
        before = self.live()
        if before is None:
            client.create_alias(name, self.name)
        else:
            client.alter_alias(name, self.name)  # the swap: readers see one or the other
        # The version just replaced stays until the next build, for readers still using it.
        self.tidy(keep=[before] if before else [])
        return name

    def _create(self, name: str, dim: int) -> bool:
        """Create a version collection; True when it has Milvus's own full-text search."""
        from pymilvus import DataType, Function, FunctionType

        client = self.client
        for full_text in self.FULL_TEXT:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=max(dim, 1))
            for field in ("source", "title", "text", "original"):
                schema.add_field(field, DataType.VARCHAR, max_length=TEXT_BYTES)
            for field in ("start", "end", "page"):
                schema.add_field(field, DataType.INT64)
            schema.add_field(
                "words", DataType.VARCHAR, max_length=TEXT_BYTES, enable_analyzer=full_text
            )
            index = client.prepare_index_params()
            kind = "FLAT" if self.lite else "AUTOINDEX"
            index.add_index(field_name="vector", index_type=kind, metric_type="IP")
            if full_text:
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_function(Function(
                    name="bm25", function_type=FunctionType.BM25,
                    input_field_names=["words"], output_field_names=["sparse"],
                ))  # fmt: skip
                index.add_index(
                    field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params=BM25_PARAMS,
                )  # fmt: skip
            try:
                client.create_collection(name, schema=schema, index_params=index)
                return full_text
            except Exception as exc:
                if full_text is self.FULL_TEXT[-1]:
                    raise RagError(f"cannot create a collection in {self}: {exc}") from exc
        return False

    def _write_meta(self, version: str, meta: dict) -> None:
        from pymilvus import DataType

        client = self.client
        if not client.has_collection(self.meta):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("piece", DataType.VARCHAR, max_length=TEXT_BYTES)
            schema.add_field("dummy", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector
            index = client.prepare_index_params()
            index.add_index(field_name="dummy", index_type="FLAT", metric_type="L2")
            client.create_collection(self.meta, schema=schema, index_params=index)
        text = json.dumps(meta, ensure_ascii=True)  # ASCII: a piece's characters are its bytes
        pieces = [text[i : i + META_PIECE] for i in range(0, len(text), META_PIECE)]
        client.insert(self.meta, [
            {"key": f"{version}/{n:06d}", "piece": p, "dummy": [0.0, 0.0]}
            for n, p in enumerate(pieces)
        ])  # fmt: skip
        client.flush(self.meta)


def _row(chunk: Chunk, vector: np.ndarray, words: str) -> dict:
    for field in (chunk.text, chunk.original):
        if len(field.encode("utf-8")) > TEXT_BYTES:
            raise RagError(
                f"a passage of {chunk.source} is longer than Milvus holds ({TEXT_BYTES} bytes)"
            )
    return {"id": chunk.id, "vector": vector.tolist(), "source": chunk.source,
            "title": chunk.title[:4000], "text": chunk.text, "original": chunk.original,
            "start": chunk.start, "end": chunk.end,
            "page": -1 if chunk.page is None else chunk.page, "words": words}  # fmt: skip


class MilvusIndex:
    """An open version in Milvus, with the methods of `rag.store.Index`."""

    def __init__(self, where: Store, version: str, manifest: dict, vocabulary: set[str]) -> None:
        self.where = where
        self.root = str(where)
        self.folder = None
        self.manifest = manifest
        self._version = version
        self._vocabulary = vocabulary
        self.cache: dict[str, object] = {}
        self.full_text = bool(manifest.get("index_params", {}).get("full_text"))

    @property
    def size(self) -> int:
        return int(self.manifest["chunks"])

    @property
    def version(self) -> str:
        return self._version

    @property
    def client(self) -> object:
        return self.where.client

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, inner product) of the k nearest passages; with `allowed`, among those."""
        if self.size == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        found = self.client.search(
            self._version,
            data=[np.asarray(query, dtype=np.float32)[0].tolist()],
            anns_field="vector",
            limit=min(k, self.size),
            filter=_only(allowed),
            search_params={"metric_type": "IP"},
        )
        return [(int(h["id"]), float(h["distance"])) for h in found[0]]

    def words(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the k best passages sharing a word with the query."""
        if not self.full_text:
            model = self.cache.get("bm25")
            if model is None:
                model = self.cache["bm25"] = lexical.build([c.text for c in self.all_chunks()])
            return lexical.search(model, query, k, self.size, allowed)
        tokens = [t for t in lexical.tokenize([query])[0] if t in self._vocabulary]
        if not tokens or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        found = self.client.search(
            self._version,
            data=[" ".join(tokens)],
            anns_field="sparse",
            limit=min(k, self.size),
            filter=_only(allowed),
            search_params={"metric_type": "BM25"},
        )
        # Milvus Lite gives BM25 scores negated (smaller is better), a server positive ones.
        return [(int(h["id"]), abs(float(h["distance"]))) for h in found[0]]

    def vocabulary(self) -> Container[str]:
        return self._vocabulary

    def chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """Passages by id, in the order asked."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        rows = self.client.query(self._version, filter=f"id in {ids}", output_fields=_OUT)
        by_id = {r["id"]: _chunk(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def all_chunks(self) -> Iterator[Chunk]:
        """Every passage in id order (read a slice of ids at a time)."""
        step = 5_000
        for start in range(0, self.size, step):
            yield from self.chunks(range(start, min(start + step, self.size)))

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of some passages, in the order asked."""
        ids = [int(i) for i in ids]
        dim = int(self.manifest.get("dim", 0))
        if not ids:
            return np.zeros((0, dim), dtype=np.float32)
        out = np.zeros((len(ids), dim), dtype=np.float32)
        where = {i: n for n, i in enumerate(ids)}
        step = 5_000
        for start in range(0, len(ids), step):
            part = ids[start : start + step]
            rows = self.client.query(
                self._version, filter=f"id in {part}", output_fields=["id", "vector"]
            )
            for r in rows:
                out[where[r["id"]]] = r["vector"]
        return out

    def close(self) -> None:
        """Nothing to release: the client is shared by the process."""


def _only(allowed: np.ndarray | None) -> str:
    """A Milvus filter keeping the `allowed` ids (sorted), as id ranges where they run on."""
    if allowed is None:
        return ""
    ids = np.asarray(allowed, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    runs = np.split(ids, breaks)
    if len(runs) * 3 < len(ids):
        return " or ".join(f"(id >= {r[0]} and id <= {r[-1]})" for r in runs)
    return f"id in {ids.tolist()}"


def _chunk(row: dict) -> Chunk:
    page = int(row["page"])
    return Chunk(int(row["id"]), row["source"], row["title"], int(row["start"]),
                 int(row["end"]), row["text"], row["original"], None if page < 0 else page)  # fmt: skip
