"""One frozen configuration: offline defaults, then environment variables, then explicit options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent

# Environment variables read by Config.load(), with the field each one sets.
ENV = {
    "RAG_HOME": "home",
    "RAG_CORPUS": "corpus",
    "RAG_INDEX_DIR": "index_dir",
    "RAG_MODELS_DIR": "models_dir",
    "RAG_EMBED_MODEL": "embed_model",
    "RAG_MODEL": "model",
    "RAG_K": "k",
    "RAG_RETRIEVAL": "retrieval",
    "RAG_THREADS": "threads",
    "RAG_INDEX_TYPE": "index_type",
    "RAG_EVIDENCE_TOKENS": "evidence_tokens",
    "RAG_CALIBRATION": "calibration",
    "RAG_MIN_CONFIDENCE": "min_confidence",
    "RAG_TIMEOUT": "timeout",
    "RAG_MAX_TOKENS": "max_tokens",
    "RAG_OCR_LANG": "ocr_languages",
    "RAG_OCR_CACHE": "ocr_cache",
    "RAG_DATA_DIR": "data_dir",
    "RAG_COLLECTION": "collection",
    "RAG_STORE": "store",
    "RAG_RAY": "ray",
}

# The settings of Config.index_type (see rag.store and docs/SCALE.md).
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw", "ivfpq")
DEFAULT_COLLECTION = "default"  # today's corpus and index (seeds/ and index/seeds by default)
_COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Config:
    """Every setting of the engine. Paths are absolute once loaded."""

    home: Path = PROJECT_DIR
    corpus: Path | None = None  # default: HOME/seeds
    index_dir: Path | None = None  # default: HOME/index/seeds
    models_dir: Path | None = None  # default: ~/.cache/rag/models
    prompts_dir: Path | None = None  # default: HOME/prompts, else the packaged copy
    # The user's own data: collections other than the default one, saved conversations and
    # feedback (default: $XDG_DATA_HOME/rag, i.e. ~/.local/share/rag).
    data_dir: Path | None = None
    # A named collection: its documents and index live in DATA_DIR/collections/NAME/ (the
    # "default" collection is `corpus` and `index_dir` above). See rag.workspace.collections.
    collection: str = DEFAULT_COLLECTION
    # Embedding and chunking (saved in the index manifest; changing them forces a full rebuild).
    embed_model: str = "all-MiniLM-L6-v2"
    chunk_tokens: int = 128  # target word pieces per passage; hard cap is the model's own limit
    overlap_tokens: int = 24
    batch_size: int = 32
    # OCR of scanned PDF pages and images: Tesseract's languages ("eng+deu"; each installed as
    # Debian's tesseract-ocr-LANG) and where the text read from each scan is kept.
    ocr_languages: str = "eng"
    ocr_cache: Path | None = None  # default: ~/.cache/rag/ocr
    # How vectors are searched: exact "flat", approximate "ivf" or "hnsw", or "auto" (flat below
    # store.APPROXIMATE_FROM passages, IVF above; see docs/BENCHMARKS.md). Recorded in the
    # manifest; a change takes effect at the next `rag index` without re-embedding.
    index_type: str = "auto"
    # Where the index lives: empty for the FAISS folder `index_dir`, or a Milvus store,
    # "milvus:PATH.db" (Milvus Lite, one file) or "milvus://HOST:PORT/NAME" (a Milvus server).
    store: str = ""
    # Build the index on Ray (`rag index --ray`): empty for this process alone, "local" for a
    # Ray cluster started here, or a cluster's address ("auto", "HOST:6379", "ray://HOST:10001").
    ray: str = ""
    # Retrieval.
    k: int = 4
    retrieval: str = "hybrid"  # dense | lexical | hybrid (see docs/QUALITY.md)
    min_score: float = (
        0.12  # no passage this close to the question (cosine): refuse without the model
    )
    # Answering.
    # The prompt gets the sentences of the k passages that answer best, up to this many tokens
    # in all (0: the whole passages). See docs/BENCHMARKS.md, "Seed questions: before and after".
    evidence_tokens: int = 240
    # A GGUF file run here (a path or a name `rag models` knows), or "openai:URL[#MODEL]": a
    # server speaking the OpenAI chat API (its key from RAG_API_KEY or OPENAI_API_KEY).
    model: str = "qwen2.5-coder-1.5b"
    timeout: float = 120.0  # seconds an answer model server may take to answer (openai:)
    n_ctx: int = 4096
    max_tokens: int = 160  # answers are one to three sentences; a runaway loop stops here
    temperature: float = 0.0
    seed: int = 0
    threads: int | None = None
    history_tokens: int = 384
    # Showing an answer: the refusal calibration (a JSON file from `rag calibrate`; empty: the
    # one shipped for the default model; "none": the check against the passages only) and its
    # threshold (empty: the calibration's own). See docs/QUALITY.md.
    calibration: str = ""
    min_confidence: float | None = None

    @classmethod
    def load(cls, **options: object) -> Config:
        """Defaults, overridden by RAG_* environment variables, overridden by non-None options."""
        values: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for var, name in ENV.items():
            raw = os.environ.get(var)
            if raw:
                values[name] = _coerce(raw, types[name])
        values.update({k: v for k, v in options.items() if v is not None})
        unknown = set(values) - set(types)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values).resolved()

    def resolved(self) -> Config:
        """Fill derived paths and make every path absolute."""
        home = Path(self.home).expanduser().resolve()
        prompts = self.prompts_dir or (home / "prompts")
        if not Path(prompts).is_dir():
            prompts = PROJECT_DIR / "prompts"
        data = _abs(self.data_dir or _data_home())
        name = collection_name(self.collection)
        corpus, index_dir = self.corpus, self.index_dir
        if name != DEFAULT_COLLECTION:  # a named collection's folders are its own
            corpus = data / "collections" / name / "documents"
            index_dir = data / "collections" / name / "index"
        return replace(
            self,
            home=home,
            data_dir=data,
            collection=name,
            corpus=_abs(corpus or home / "seeds"),
            index_dir=_abs(index_dir or home / "index" / "seeds"),
            models_dir=_abs(self.models_dir or _cache_home() / "models"),
            ocr_cache=_abs(self.ocr_cache or _cache_home() / "ocr"),
            prompts_dir=_abs(prompts),
        )

    def with_(self, **options: object) -> Config:
        """A copy with some settings changed (None values are ignored)."""
        changes = {k: v for k, v in options.items() if v is not None}
        leaving = self.collection != DEFAULT_COLLECTION and "collection" in changes
        if leaving and collection_name(changes["collection"]) == DEFAULT_COLLECTION:
            # A named collection's folders replaced the default ones: bring those back.
            default = Config.load(home=self.home, data_dir=self.data_dir, collection="default")
            changes.setdefault("corpus", default.corpus)
            changes.setdefault("index_dir", default.index_dir)
        return replace(self, **changes).resolved()


def collection_name(name: str | None) -> str:
    """A collection's name, checked: lowercase letters, digits, "-" and "_", up to 64."""
    from .errors import RagError

    name = (name or DEFAULT_COLLECTION).strip().lower()
    if not _COLLECTION_NAME.fullmatch(name):
        raise RagError(
            f"{name!r} cannot name a collection: use up to 64 lowercase letters, digits, "
            '"-" and "_", starting with a letter or digit'
        )
    return name


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "rag"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag"


def _abs(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _coerce(raw: str, kind: object) -> object:
    kind = str(kind)
    if "int" in kind:
        return int(raw)
    if "float" in kind:
        return float(raw)
    if "Path" in kind:
        return Path(raw)
    return raw
