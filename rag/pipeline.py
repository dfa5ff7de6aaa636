"""The engine that joins the stages: index, embedding model and answer model, loaded once."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from . import (
    confidence,
    embed,
    evidence,
    filters,
    generate,
    ingest,
    judge,
    lexical,
    messages,
    retrieve,
    rewrite,
    store,
    verify,
)
from .config import Config
from .embed import Embedder
from .errors import BadQuestion, IndexMismatch
from .judge import make_answer, off_topic_terms  # noqa: F401 - part of this module's API
from .types import Answer, Hit, IndexSummary

MAX_QUESTION_CHARS = 2000


class Engine:
    """Holds the open index and the loaded models; every call after the first reuses them."""

    def __init__(self, config: Config | None = None, build_missing: bool = False) -> None:
        self.config = config or Config.load()
        self.build_missing = build_missing
        self._index: store.Index | None = None
        self._embedder: Embedder | None = None
        self._llm = None
        self._calibration: confidence.Calibration | None | bool = False  # False: not loaded
        self._lock = threading.RLock()
        self._llm_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------

    @property
    def index(self) -> store.Index:
        """The live index version; re-opened when a rebuild has swapped in a new one."""
        where = store.open_store(self.config)
        with self._lock:
            live = where.live()
            if self._index is not None and live is not None and live == self._index.version:
                return self._index
            if live is None and self.build_missing and Path(self.config.corpus).is_dir():
                self.build([self.config.corpus])
            index = where.load()
            model = index.manifest.get("embed_model")
            if self._embedder is not None and self._embedder.name != model:
                self._embedder = None
            self._index = index
            return index

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            model = self.index.manifest.get("embed_model", self.config.embed_model)
            if self._embedder is None:
                self._embedder = embed.load(model, self.config.batch_size, self.config.threads)
            if self._embedder.dim != self.index.manifest.get("dim"):
                raise IndexMismatch(
                    f"the index at {self.config.index_dir} holds {self.index.manifest.get('dim')}-"
                    f"dimension vectors but {model} makes {self._embedder.dim}: run "
                    f"`rag index --full --index-dir {self.config.index_dir}`"
                )
            return self._embedder

    @property
    def llm(self) -> generate.Generator:
        """The answer model (`rag.generate.Generator`): a GGUF file run here, or a server."""
        # Loaded under its own lock, not the engine's: searches go on while it loads.
        with self._llm_lock:
            if self._llm is None:
                c = self.config
                self._llm = generate.load(
                    c.model, Path(c.models_dir), c.n_ctx, c.threads, c.seed, c.timeout
                )
            return self._llm

    # -- indexing and search -------------------------------------------------------------

    def build(
        self,
        paths: Sequence[Path | str] | None = None,
        full: bool = False,
        progress: ingest.Progress | None = None,
    ) -> IndexSummary:
        """Build or update this engine's index (see `rag.ingest.build`); the embedding model
        comes from the process-wide cache (`embed.load`), so it is loaded once for both."""
        return ingest.build(paths, self.config, full=full, progress=progress)

    def search(self, query: str, k: int | None = None, where: filters.Filter = None) -> list[Hit]:
        """The passages that best match a query, best first, among the documents `where`
        allows (see `rag.filters.parse`)."""
        query = _check_question(query)
        return self._retrieve(query, k or self.config.k, filters.parse(where))

    def _retrieve(self, query: str, k: int, where: filters.Where | None = None) -> list[Hit]:
        index = self.index  # one version for the whole search, even if a rebuild swaps now
        return retrieve.search(index, self.embedder, query, k, self.config.retrieval, where)

    # -- answering -----------------------------------------------------------------------

    def standalone(self, question: str, history: Sequence[dict] | None) -> str:
        """The question rewritten to stand alone, when it leans on earlier turns."""
        if not rewrite.needs_rewrite(question, history):
            return question
        llm = self.llm
        chat = rewrite.messages(
            question,
            history or [],
            self.config.prompts_dir,
            llm.count_tokens,
            self.config.history_tokens,
        )
        written = generate.generate(
            llm, chat, max_tokens=rewrite.MAX_TOKENS, temperature=0.0, stop=rewrite.STOPS
        )
        return rewrite.accept(written, question)

    def evidence(
        self,
        question: str,
        hits: Sequence[Hit],
        budget: int | None = None,
        context: int = evidence.CONTEXT,
    ) -> list[evidence.Excerpt]:
        """What of the passages goes into the prompt: their sentences that answer the question
        best with their neighbours, within the `evidence_tokens` budget (whole passages when it
        is 0)."""
        budget = self.config.evidence_tokens if budget is None else budget
        if budget <= 0:
            return [evidence.Excerpt(h, h.chunk.text, h.score) for h in hits]
        found = evidence.split(hits)
        if not found:
            return []
        embedder = self.embedder
        vectors = embedder.encode([s.text for s in found])
        terms = lexical.tokenize([question, *(s.text for s in found)])
        scores = evidence.score(
            embedder.encode_query(question),
            vectors,
            set(terms[0]),
            [set(t) for t in terms[1:]],
            [s.passage for s in found],
        )
        return evidence.select(hits, found, scores, self.llm.count_tokens, budget, context)

    def answer_messages(
        self, question: str, hits: Sequence[Hit], texts: Sequence[str] | None = None
    ) -> tuple[list[dict], list[Hit]]:
        """The chat for one question over numbered passages, and the passages that fit
        (see `rag.messages.answer_messages`)."""
        c = self.config
        return messages.answer_messages(
            question, hits, texts, c.prompts_dir, self.llm.count_tokens, c.n_ctx, c.max_tokens
        )

    def stream(
        self,
        question: str,
        history: Sequence[dict] | None = None,
        k: int | None = None,
        where: filters.Filter = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the final `Answer`; only the
        documents `where` allows are searched (see `rag.filters.parse`)."""
        began = time.perf_counter()
        question = _check_question(question)
        where = filters.parse(where)
        if where:  # a filter that matches nothing is said before the model is asked anything
            filters.passage_ids(where, self.index.manifest)
        searched = self.standalone(question, history)
        rewritten_at = time.perf_counter()
        hits = self._retrieve(searched, k or self.config.k, where)
        # The rewrite's time whenever it ran, even when its result was not used.
        asked = rewrite.needs_rewrite(question, history)
        timings = {"rewrite_s": rewritten_at - began if asked else 0.0}
        timings["retrieve_s"] = time.perf_counter() - rewritten_at
        if not hits or max(h.score for h in hits) < self.config.min_score:
            yield messages.REFUSAL
            timings["total_s"] = time.perf_counter() - began
            yield judge.refusal(
                searched, "no passage is close to the question", timings, passages=tuple(hits)
            )
            return
        chose_at = time.perf_counter()
        excerpts = self.evidence(searched, hits)
        timings["evidence_s"] = time.perf_counter() - chose_at
        result = yield from self._answer_from(searched, hits, excerpts, timings, show=True)
        if result.outcome == "withheld" and result.signals.get("astray"):
            # A number taken from the sentence next to the fact asked ("how many Russian
            # troops" answered with another army's size): asked once more without the
            # passages that say it of something else.
            texts = [e.text for e in excerpts]
            astray = verify.astray_passages(result.draft, searched, texts)
            kept = [e for i, e in enumerate(excerpts) if i not in set(astray)]
            if astray and kept:
                again_at = time.perf_counter()
                retimed = dict(timings)
                second = yield from self._answer_from(searched, hits, kept, retimed, show=False)
                if second.outcome == "answered":
                    timings = retimed
                    timings["retry_s"] = time.perf_counter() - again_at
                    result = replace(second, timings=timings)
        timings["total_s"] = time.perf_counter() - began
        yield result

    def _answer_from(
        self,
        searched: str,
        hits: Sequence[Hit],
        excerpts: Sequence[evidence.Excerpt],
        timings: dict,
        show: bool,
    ) -> Generator[str, None, Answer]:
        """Generate over the excerpts and judge the answer (see `rag.judge.make_answer`);
        yields the text pieces when `show`, and returns the Answer."""
        llm = self.llm
        chat, shown = self.answer_messages(
            searched, [e.hit for e in excerpts], [e.text for e in excerpts]
        )
        pieces: list[str] = []
        for piece in llm.stream(
            chat,
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            stop=messages.ANSWER_STOPS,
        ):
            pieces.append(piece)
            if show:
                yield piece
        timings.update(llm.last_stats)
        signals = {
            "retrieval": max(h.score for h in hits),
            "evidence": max((e.score for e in excerpts), default=0.0),
        }
        for name in ("logprob_mean", "logprob_min"):
            signals[name] = llm.last_stats.get(name)
        checked_at = time.perf_counter()
        known = retrieve.vocabulary(self.index)
        texts = [e.text for e in excerpts[: len(shown)]]
        result = judge.make_answer(
            "".join(pieces), shown, searched, timings, known, texts, signals, self.calibration
        )
        timings["check_s"] = time.perf_counter() - checked_at
        return result

    @property
    def calibration(self) -> confidence.Calibration | None:
        """The refusal calibration, when it was fitted for this answer model (another model's
        probabilities are on another scale: its answers get the check against passages only)."""
        if self._calibration is False:
            setting = self.config.calibration
            if setting == "none" or not (setting or confidence.DEFAULT.is_file()):
                self._calibration = None
            else:
                cal = confidence.load(setting or None)
                fitted = cal.fitted_on.get("model")
                if setting or fitted == self.config.model:
                    if self.config.min_confidence is not None:
                        cal = replace(cal, threshold=self.config.min_confidence)
                    self._calibration = cal
                else:
                    self._calibration = None
        return self._calibration

    def answer(
        self,
        question: str,
        history: Sequence[dict] | None = None,
        k: int | None = None,
        where: filters.Filter = None,
    ) -> Answer:
        """Answer a question from the documents (those `where` allows), citing the passages
        used."""
        result = None
        for item in self.stream(question, history, k, where):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result


def _check_question(question: str) -> str:
    question = " ".join(str(question or "").split())
    if not question:
        raise BadQuestion("the question is empty: type a question about your documents")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadQuestion(
            f"the question is {len(question):,} characters long; ask in at most "
            f"{MAX_QUESTION_CHARS:,} (put long material in a document and index it)"
        )
    return question


# -- the module-level API: one engine per configuration, created on first use ------------

_engines: dict[Config, Engine] = {}
_engines_lock = threading.Lock()


def engine(config: Config | None = None, **options: object) -> Engine:
    """The shared engine for a configuration (the default index over seeds/ if none given)."""
    config = (config or Config.load()).with_(**options)
    with _engines_lock:
        if config not in _engines:
            default = config.index_dir == Config.load().index_dir
            _engines[config] = Engine(config, build_missing=default)
        return _engines[config]


def _split(options: dict) -> tuple[Config | None, int | None, dict]:
    config = options.pop("config", None)
    if "index" in options:
        options["index_dir"] = options.pop("index")
    return config, options.pop("k", None), options


def answer(
    question: str,
    history: Sequence[dict] | None = None,
    where: filters.Filter = None,
    **options: object,
) -> Answer:
    """Answer a question from the indexed documents, with citations. `where` restricts it to
    some documents (see `rag.filters.parse`); options are Config fields (e.g. `collection`,
    `model`, `index_dir`, `k`) or `config=`."""
    config, k, rest = _split(dict(options))
    return engine(config, **rest).answer(question, history, k, where)


def stream(
    question: str,
    history: Sequence[dict] | None = None,
    where: filters.Filter = None,
    **options: object,
) -> Iterator[str | Answer]:
    """Like `answer`, but yields text pieces as they are generated and ends with the Answer."""
    config, k, rest = _split(dict(options))
    return engine(config, **rest).stream(question, history, k, where)


def search(
    query: str, k: int | None = None, where: filters.Filter = None, **options: object
) -> list[Hit]:
    """The passages of the index that best match a query (among the documents `where`
    allows)."""
    config, _, rest = _split(dict(options))
    return engine(config, **rest).search(query, k, where)


def build(
    paths: Sequence[Path | str] | None = None,
    full: bool = False,
    progress: ingest.Progress | None = None,
    **options: object,
) -> IndexSummary:
    """Build or update an index from files and folders; returns what changed. With
    `collection=NAME`, that collection's index (the collection is made if it is new)."""
    from .workspace import collections

    config, _, rest = _split(dict(options))
    chosen = engine(config, **rest)
    collections.create(chosen.config, chosen.config.collection, exist_ok=True)
    return chosen.build(paths, full=full, progress=progress)


def load(index_dir: Path | str | None = None) -> store.Index:
    """Open an index folder (the default one if not given), checking it is whole."""
    return store.load(Path(index_dir) if index_dir else Config.load().index_dir)
