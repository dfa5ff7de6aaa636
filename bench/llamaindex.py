"""Against LlamaIndex: the seeds through LlamaIndex's usual pipeline and through ours, same models.

Both sides index `seeds/` with the same embedding model (the bundled all-MiniLM-L6-v2) and
answer the seed development questions with the same GGUF model through llama-cpp-python, with
2 threads, temperature 0, the same context size and answer length. LlamaIndex runs as its
documentation shows: `SimpleDirectoryReader`, `VectorStoreIndex` over a `FaissVectorStore`
(`IndexFlatL2`), `HuggingFaceEmbedding`, `LlamaCPP`, and the default query engine (streaming;
similarity_top_k, chunking and response mode at their defaults), the index persisted to a
folder as ours is. Ours is `rag.ingest.build` and `rag.Engine`.

Each side runs in a new process of its own. Both stay alive and are asked in turn, one at a
time, who goes first alternating, so drift in the load of a shared machine hits both alike.
Models are loaded before any clock starts. Peak memory (VmHWM) is measured apart, in rounds of
new processes (one a side, the first rotating) that load, build and answer a few questions.

Beyond those shared settings, the one thing LlamaIndex is given is the model's own chat
template (llama-cpp-python's `Jinja2ChatFormatter`, as `Llama.create_chat_completion` uses it):
without it `LlamaCPP` sends the bare prompt, which no instruction-tuned model is meant to read.

    python -m bench llamaindex [--quick]                      # the default model
    python -m bench.llamaindex --model smollm2-135m --quick   # a quick try with the small one
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import measure, report

NAME = "llamaindex"
TITLE = "Against LlamaIndex"
THREADS = 2
SIDES = ("ours", "llamaindex")
# LlamaIndex again with the model file read into memory as ours reads it (not memory-mapped,
# LlamaIndex's default): its peak memory under the same setting as ours.
READ_SIDE = "llamaindex-read"
ROUNDS = 3  # index builds and searches of every question: each side
# Answers: every question asked of both sides, the first alternating from question to question,
# in three rounds (about 20 s a question for both sides with the default model on 2 cores).
ANSWER_ROUNDS = 3
# Peak memory: rounds of new processes, one for each of MEMORY_SIDES (the first rotating), each
# loading, building and answering the first MEMORY_QUESTIONS questions (enough to reach its
# peak: the context is allocated at load), then reading its VmHWM.
MEMORY_SIDES = (*SIDES, READ_SIDE)
MEMORY_ROUNDS = 3
MEMORY_QUESTIONS = 3


def seed_questions(quick: bool = False) -> list[dict]:
    """The rows of seed_dev.jsonl (id, question, history, gold_doc, must); with `quick`, every
    third one (five questions, one of them unanswerable)."""
    rows = [json.loads(line) for line in measure.SEED_QUESTIONS.read_text().splitlines() if line]
    return rows[::3] if quick else rows


def judge(row: dict, text: str, refused: bool | None = None) -> bool | None:
    """Whether an answer is right by `rag eval`'s rule: every `must` group has an alternative in
    the answer, which is no refusal; an unanswerable question (gold_doc null) wants a refusal.
    `refused` defaults to what `rag.cite.is_refusal` reads in the text."""
    from rag import cite, evaluate
    from rag.evalsets import EvalQuestion
    from rag.types import Answer

    gold = row.get("gold_doc", "")
    question = EvalQuestion(
        id=str(row.get("id", "")),
        question=row["question"],
        relevant={gold: 1.0} if gold else {},
        must=tuple(tuple(group) for group in row.get("must") or ()),
        answerable=gold is not None,
    )
    said = Answer(text, refused=cite.is_refusal(text) if refused is None else refused)
    return evaluate._answer_scores(said, question, str)["correct"]


class _ChatTemplate:
    """LlamaIndex's `messages_to_prompt` and `completion_to_prompt` in the GGUF's own chat
    template; remembers every prompt it renders, so their tokens can be counted."""

    def __init__(self) -> None:
        self.formatter = None
        self.prompts: list[str] = []

    def bind(self, llama) -> None:  # noqa: ANN001 - llama_cpp.Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from rag.generate import CHATML

        def text(token: int) -> str:
            return llama.detokenize([token], special=True).decode("utf-8", errors="replace")

        eos, bos = llama.token_eos(), llama.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=llama.metadata.get("tokenizer.chat_template") or CHATML,
            eos_token=text(eos) if eos != -1 else "",
            bos_token=text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def messages(self, messages: Sequence) -> str:  # llama_index ChatMessage
        chat = [{"role": m.role.value, "content": m.content or ""} for m in messages]
        self.prompts.append(self.formatter(messages=chat).prompt)
        return self.prompts[-1]

    def completion(self, text: str) -> str:
        from llama_index.core.llms import ChatMessage

        return self.messages([ChatMessage(role="user", content=text)])


class LlamaIndexPipeline:
    """LlamaIndex's usual pipeline with our models: loaded once, then index and ask."""

    def __init__(self, model: str | None = None, threads: int = THREADS, mmap: bool = True) -> None:
        import torch
        from llama_index.core import Settings
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from llama_index.llms.llama_cpp import LlamaCPP

        from rag import Config, embed, models

        torch.set_num_threads(threads)
        config = Config.load(threads=threads, **({"model": model} if model else {}))
        self.config = config
        began = time.perf_counter()
        self.embed_model = HuggingFaceEmbedding(
            model_name=embed.locate(config.embed_model), device="cpu"
        )
        self.dim = len(self.embed_model.get_query_embedding("a warm-up question"))
        loaded = time.perf_counter()
        self.template = _ChatTemplate()
        self.llm = LlamaCPP(
            model_path=str(models.resolve(config.model, Path(config.models_dir))),
            temperature=config.temperature,
            max_new_tokens=config.max_tokens,
            context_window=config.n_ctx,
            model_kwargs={"n_threads": threads, "seed": config.seed, "use_mmap": mmap},
            messages_to_prompt=self.template.messages,
            completion_to_prompt=self.template.completion,
            verbose=False,
        )
        self.template.bind(self.llm._model)
        self.load_s = {"embed": loaded - began, "llm": time.perf_counter() - loaded}
        # Nothing may fall back to LlamaIndex's default (OpenAI) models.
        Settings.embed_model = self.embed_model
        Settings.llm = self.llm
        self.index = None

    def build(self, folder: Path, persist_dir: Path) -> dict:
        """Read, chunk, embed and store `folder`, then persist the index; seconds per stage."""
        import faiss
        from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
        from llama_index.core.schema import MetadataMode
        from llama_index.vector_stores.faiss import FaissVectorStore

        began = time.perf_counter()
        documents = SimpleDirectoryReader(str(folder)).load_data()
        read = time.perf_counter()
        store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(self.dim))
        context = StorageContext.from_defaults(vector_store=store)
        self.index = VectorStoreIndex.from_documents(
            documents, storage_context=context, embed_model=self.embed_model
        )
        indexed = time.perf_counter()
        self.index.storage_context.persist(persist_dir=str(persist_dir))
        ended = time.perf_counter()
        self.retriever = self.index.as_retriever()
        self.query_engine = self.index.as_query_engine(llm=self.llm, streaming=True)
        nodes = list(self.index.docstore.docs.values())
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        return {
            "total": ended - began,
            "read": read - began,
            "embed": indexed - read,  # chunking too, and adding to FAISS
            "write": ended - indexed,
            "passages": len(nodes),
            "word_pieces": _word_pieces(self.embed_model._model, texts),
        }

    def open(self) -> None:
        """Nothing to do: the models are loaded and the last index built is held."""

    def settings(self) -> dict:
        """The settings that shape its work, as LlamaIndex chose them."""
        from llama_index.core import Settings

        return {
            "chunk_size": Settings.chunk_size,
            "chunk_overlap": Settings.chunk_overlap,
            "top_k": self.retriever._similarity_top_k,
            "response_mode": type(self.query_engine._response_synthesizer).__name__,
            "n_batch": self.llm._model.n_batch,
            "mmap": _uses_mmap(self.llm._model),
            "embed_batch": self.embed_model.embed_batch_size,
        }

    def search(self, question: str) -> int:
        return len(self.retriever.retrieve(question))

    def answer(self, row: dict) -> dict:
        """Ask one question (its history is not used: the query engine keeps none)."""
        self.template.prompts.clear()
        began = time.perf_counter()
        response = self.query_engine.query(row["question"])
        first = None
        pieces = []
        for piece in response.response_gen:
            if first is None and piece.strip():
                first = time.perf_counter() - began
            pieces.append(piece)
        total = time.perf_counter() - began
        text = "".join(pieces).strip()
        llama = self.llm._model
        tokens = [
            len(llama.tokenize(p.encode(), add_bos=True, special=True))
            for p in self.template.prompts
        ]
        return {
            "id": row.get("id"),
            "prompt_tokens": sum(tokens),
            "ttft_s": first,
            "total_s": total,
            "text": text,
            "correct": judge(row, text),
            "llm_calls": len(tokens),
        }


class OursPipeline:
    """`rag` with the same models and threads: `rag.ingest.build`, then `rag.Engine`."""

    def __init__(self, model: str | None = None, threads: int = THREADS) -> None:
        from rag import Config, embed

        self.config = Config.load(threads=threads, **({"model": model} if model else {}))
        began = time.perf_counter()
        c = self.config
        self.embedder = embed.load(c.embed_model, c.batch_size, c.threads)
        self.embedder.encode(["a warm-up question"])
        self.load_s = {"embed": time.perf_counter() - began}
        self.engine = None
        self.index_dir: Path | None = None

    def build(self, folder: Path, index_dir: Path) -> dict:
        from bench.indexing import _build
        from rag import ingest, store

        stages, summary = _build(folder, index_dir, self.config, self.embedder)
        self.index_dir = index_dir
        index = store.load(index_dir)
        texts = [ingest.vector_text(c) for c in index.all_chunks()]
        index.close()
        return {
            "total": stages["total"],
            "read": stages["read_clean_chunk"],  # cleaning and chunking too
            "embed": stages["embed"],
            "write": stages["store"],
            "passages": summary.chunks,
            "word_pieces": _word_pieces(self.embedder.model, texts),
        }

    def open(self) -> None:
        """The engine over the last index built, its answer model loaded now."""
        from rag import Engine

        began = time.perf_counter()
        self.engine = Engine(self.config.with_(index_dir=self.index_dir))
        self.engine.llm  # noqa: B018 - load it before any clock starts
        self.load_s["llm"] = time.perf_counter() - began

    def settings(self) -> dict:
        from rag.generate import CHUNK

        c = self.config
        return {
            "chunk_size": c.chunk_tokens,
            "chunk_overlap": c.overlap_tokens,
            "top_k": c.k,
            "retrieval": c.retrieval,
            "evidence_tokens": c.evidence_tokens,
            "n_batch": CHUNK,
            "mmap": _uses_mmap(self.engine.llm._llama),
            "embed_batch": c.batch_size,
        }

    def search(self, question: str) -> int:
        return len(self.engine.search(question))

    def answer(self, row: dict) -> dict:
        from rag import Answer

        began = time.perf_counter()
        first = None
        result = None
        for item in self.engine.stream(row["question"], row.get("history") or None):
            if isinstance(item, Answer):
                result = item
            elif first is None and item.strip():
                first = time.perf_counter() - began
        total = time.perf_counter() - began
        t = result.timings
        return {
            "id": row.get("id"),
            "prompt_tokens": t.get("prompt_tokens", 0),
            "ttft_s": first,
            "total_s": total,
            "text": result.text,
            "correct": judge(row, result.text, result.refused),
            "cached_tokens": t.get("cached_tokens", 0),
        }


def _uses_mmap(llama) -> bool:  # noqa: ANN001 - llama_cpp.Llama
    """Whether llama.cpp memory-maps the model file (llama-cpp-python's default)."""
    import llama_cpp

    mapped = (llama_cpp.LLAMA_LOAD_MODE_MMAP, llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK)
    return llama.model_params.load_mode in mapped


def _word_pieces(model, texts: Sequence[str]) -> int:  # noqa: ANN001 - SentenceTransformer
    """Word pieces the embedding model reads of these texts (it cuts each at its limit)."""
    limit = int(model.max_seq_length) - 2
    ids = model.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=limit)[
        "input_ids"
    ]
    return sum(len(x) for x in ids)


def llamaindex_answers(questions: list[dict], model: str | None = None) -> list[dict]:
    """LlamaIndex's answers to seed questions (rows of seed_dev.jsonl), in this process: per
    question {id, prompt_tokens, ttft_s, total_s, text, correct, llm_calls}. Times run from the
    question to the first non-blank text and to the end. The model defaults to rag's."""
    pipeline = LlamaIndexPipeline(model)
    with tempfile.TemporaryDirectory(prefix="rag-bench-llamaindex-") as tmp:
        pipeline.build(measure.SEEDS, Path(tmp) / "index")
        pipeline.open()
        return [pipeline.answer(row) for row in questions]


def serve(side: str, model: str | None) -> None:
    """In a child process: one side, doing what the parent asks, one JSON command a line on
    stdin (load, build, open, search, answer, peak), one JSON result a line on stdout."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the results
    sys.stdout = sys.stderr
    pipeline: OursPipeline | LlamaIndexPipeline | None = None
    for line in sys.stdin:
        command = json.loads(line)
        do = command["do"]
        if do == "load":
            if side == "ours":
                pipeline = OursPipeline(model)
            else:
                pipeline = LlamaIndexPipeline(model, mmap=side != READ_SIDE)
            result: object = pipeline.config.model
        elif do == "build":
            result = pipeline.build(measure.SEEDS, Path(command["dir"]))
        elif do == "open":
            pipeline.open()
            result = {"load_s": pipeline.load_s, "settings": pipeline.settings()}
        elif do == "search":
            result = []
            for question in command["questions"]:
                began = time.perf_counter()
                pipeline.search(question)
                result.append(time.perf_counter() - began)
        elif do == "answer":
            result = pipeline.answer(command["row"])
        elif do == "peak":
            result = measure.peak_rss_mb()
        else:
            raise ValueError(f"unknown command {do!r}")
        out.write(json.dumps(result) + "\n")
        out.flush()


class _Side:
    """One side's child process (`serve`), asked one thing at a time."""

    def __init__(self, side: str, model: str) -> None:
        self.side = side
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [measure.PYTHON, "-m", "bench.llamaindex", "serve", side, "--model", model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=measure.environment(),
            cwd=measure.PROJECT,
        )

    def ask(self, do: str, **args: object) -> object:
        try:
            self.proc.stdin.write(json.dumps({"do": do, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"bench.llamaindex serve {self.side} ended at {do!r}:\n{tail}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _order(i: int) -> tuple[str, ...]:
    """Who goes first alternates, so drift in the machine's load hits both sides alike."""
    return SIDES if i % 2 == 0 else SIDES[::-1]


def measure_both(model: str, quick: bool) -> dict:
    """Both sides in their own processes, alive together but never working at once: the
    parent asks each in turn, the first alternating, to load, build the index, search every
    seed question and answer every seed question, each for ROUNDS rounds (answers: one round
    with `quick`). Then the rounds of peak memory (`_memory_rounds`), with LlamaIndex also
    reading the model into memory as ours reads it: its peak under the same setting."""
    answer_rounds = 1 if quick else ANSWER_ROUNDS
    questions = [row["question"] for row in seed_questions()]
    results: dict = {s: {"builds": [], "searches": [], "answers": []} for s in SIDES}
    with tempfile.TemporaryDirectory(prefix="rag-bench-llamaindex-") as tmp:
        sides = {s: _Side(s, model) for s in SIDES}
        try:
            for s in SIDES:
                sides[s].ask("load")
            for r in range(ROUNDS):
                for s in _order(r):
                    path = str(Path(tmp) / f"{s}-{r}")
                    results[s]["builds"].append(sides[s].ask("build", dir=path))
            for s in SIDES:
                results[s].update(sides[s].ask("open"))
                sides[s].ask("search", questions=["a warm-up question"])
                results[s]["searches"] = [[] for _ in range(ROUNDS)]
            for r in range(ROUNDS):
                for i, question in enumerate(questions):
                    for s in _order(r + i):
                        (took,) = sides[s].ask("search", questions=[question])
                        results[s]["searches"][r].append(took)
            for r in range(answer_rounds):
                for s in SIDES:
                    results[s]["answers"].append([])
                for i, row in enumerate(seed_questions(quick)):
                    for s in _order(r + i):
                        results[s]["answers"][r].append(sides[s].ask("answer", row=row))
                        print(
                            f"  round {r + 1} {s} {row['id']}: "
                            f"{results[s]['answers'][r][-1]['total_s']:.1f} s",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for side in sides.values():
                side.close()
        results[READ_SIDE] = {}
        peaks = _memory_rounds(model, 1 if quick else MEMORY_ROUNDS, Path(tmp))
        for s in MEMORY_SIDES:
            results[s]["peaks_mb"] = peaks[s]
    return results


def _memory_rounds(model: str, rounds: int, tmp: Path) -> dict[str, list[float]]:
    """Each side's peak memory (MB) in each round: a new process a side, one at a time, the
    first rotating from round to round, that loads, builds, answers the first MEMORY_QUESTIONS
    seed questions and reads its VmHWM."""
    peaks: dict[str, list[float]] = {s: [] for s in MEMORY_SIDES}
    for r in range(rounds):
        for s in MEMORY_SIDES[r % len(MEMORY_SIDES) :] + MEMORY_SIDES[: r % len(MEMORY_SIDES)]:
            side = _Side(s, model)
            try:
                side.ask("load")
                side.ask("build", dir=str(tmp / f"memory-{s}-{r}"))
                side.ask("open")
                for row in seed_questions()[:MEMORY_QUESTIONS]:
                    side.ask("answer", row=row)
                peaks[s].append(side.ask("peak"))
            finally:
                side.close()
    return peaks


def run(quick: bool = False, model: str | None = None) -> dict:
    from rag import Config

    began = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    model = model or Config.load().model
    results = measure_both(model, quick)
    _write(began, results, model, quick, load_before)
    return results


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _summary(r: dict) -> dict:
    """One side's figures: each the median over rounds (and over questions within a round)."""
    answers = r["answers"][0]  # the first round's answers (temperature 0: all rounds alike)
    index = sorted(r["builds"], key=lambda b: b["total"])[len(r["builds"]) // 2]
    return {
        "index_s": index["total"],
        "read_s": index["read"],
        "embed_s": index["embed"],
        "write_s": index["write"],
        "passages": index["passages"],
        "word_pieces": index["word_pieces"],
        "embed_rate": index["word_pieces"] / index["embed"],
        "search_ms": _median([_median(times) for times in r["searches"]]) * 1000,
        "ttft_s": _median([_median([a["ttft_s"] for a in rnd]) for rnd in r["answers"]]),
        "total_s": _median([_median([a["total_s"] for a in rnd]) for rnd in r["answers"]]),
        "prompt_tokens": _median([a["prompt_tokens"] for a in answers]),
        "correct": sum(1 for a in answers if a["correct"]),
        "judged": sum(1 for a in answers if a["correct"] is not None),
        "peak_mb": _median(r["peaks_mb"]),
        # Round by round, for the ratios' spread.
        "rounds": {
            "index_s": [b["total"] for b in r["builds"]],
            "embed_rate": [b["word_pieces"] / b["embed"] for b in r["builds"]],
            "search_ms": [_median(times) * 1000 for times in r["searches"]],
            "ttft_s": [_median([a["ttft_s"] for a in rnd]) for rnd in r["answers"]],
            "peak_mb": r["peaks_mb"],
        },
    }


# The rows of the main table: label and key of _summary, and whether to show ours / LlamaIndex.
ROWS = (
    ("index `seeds/` (s, median of {builds} builds)", "index_s", True),
    ("… of which reading (and for ours cleaning, chunking) (s)", "read_s", True),
    ("… of which embedding (and for LlamaIndex chunking, FAISS) (s)", "embed_s", True),
    ("… of which writing the index folder (s)", "write_s", True),
    ("passages in the index", "passages", False),
    ("word pieces embedded (MiniLM reads at most 256 per passage)", "word_pieces", True),
    ("… embedded per second", "embed_rate", True),
    ("retrieval, median per question (ms)", "search_ms", True),
    ("time to first token, median (s)", "ttft_s", True),
    ("answer total, median (s)", "total_s", True),
    ("prompt tokens, median", "prompt_tokens", True),
    ("correct answers (`must` rule of `rag eval`)", "correct", False),
    ("peak memory of the process, VmHWM (MB, median of {memory} new processes)", "peak_mb", True),
)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "–"


def _write(
    began: datetime.datetime,
    results: dict,
    model: str,
    quick: bool,
    load_before: Sequence[float],
) -> None:
    from rag import Config

    config = Config.load()
    ours, li = (_summary(results[s]) for s in SIDES)
    n = len(results["ours"]["answers"][0])
    answer_rounds = len(results["ours"]["answers"])
    builds = len(results["ours"]["builds"])
    rows = []
    for label, key, ratio in ROWS:
        a, b = ours[key], li[key]
        if key == "correct":
            a, b = f"{a} / {ours['judged']}", f"{b} / {li['judged']}"
        label = label.format(builds=builds, memory=len(results["ours"]["peaks_mb"]))
        rows.append([label, a, b, _ratio(a, b) if ratio else ""])
    load = results["ours"]["load_s"], results["llamaindex"]["load_s"]
    body = (
        f"Answer model {model}, embedding model all-MiniLM-L6-v2, {THREADS} threads for "
        f"llama.cpp and torch, temperature {config.temperature:g}, context {config.n_ctx} tokens, "
        f"at most {config.max_tokens} answer tokens, on both sides. "
        f"{n} seed questions answered{' (`--quick`: every third)' if quick else ''}. Each side "
        "runs in a new process of its own; both stay alive and the benchmark asks them in turn, "
        "one at a time, who goes first alternating (each index build, each round of searches, "
        "each question), so both meet the same load on this shared machine. Models are loaded "
        f"before any clock starts (ours: embedding {load[0]['embed']:.1f} s, answer model "
        f"{load[0]['llm']:.1f} s; LlamaIndex: {load[1]['embed']:.1f} s, {load[1]['llm']:.1f} s). "
        f"Every figure is the median over {builds} rounds (indexing: {builds} builds each; "
        f"retrieval: {builds} searches of each of the {len(seed_questions())} seed questions, "
        f"the median over the questions in each round; answers: {answer_rounds} round(s) of "
        "every question), and every target's ratio is taken round by round, its spread shown. "
        "Retrieval is the retriever alone, query encoding included. Times to first token and "
        "totals run from the question to the first non-blank text and to the end of the "
        "answer, retrieval and prompt building included. Load average at the start "
        f"{' / '.join(f'{x:.2f}' for x in load_before)}"
        f"{f', run at niceness {os.nice(0)}' if os.nice(0) else ''}.\n\n"
    )
    body += report.table(["what", "ours", "LlamaIndex", "ours / LlamaIndex"], rows)
    body += "\n**Per question**\n\n"
    by_id = {a["id"]: a for a in results["llamaindex"]["answers"][0]}
    per = []
    for a in results["ours"]["answers"][0]:
        b = by_id.get(a["id"], {})
        per.append(
            [
                a["id"],
                a["prompt_tokens"],
                a["ttft_s"],
                a["total_s"],
                _mark(a["correct"]),
                b.get("prompt_tokens"),
                b.get("ttft_s"),
                b.get("total_s"),
                _mark(b.get("correct")),
            ]
        )
    body += report.table(
        [
            "question",
            "ours prompt tokens",
            "ours first token s",
            "ours total s",
            "ours correct",
            "LlamaIndex prompt tokens",
            "LlamaIndex first token s",
            "LlamaIndex total s",
            "LlamaIndex correct",
        ],
        per,
    )
    o, x = results["ours"]["settings"], results["llamaindex"]["settings"]
    body += (
        "\n**What differs, and why.** Each side keeps its own defaults where they are its "
        f"design. LlamaIndex splits into {x['chunk_size']:,}-token chunks (overlap "
        f"{x['chunk_overlap']}), so each seed article is about one chunk, of which the embedding "
        "model reads only the first 256 word pieces; its query engine puts the "
        f"{x['top_k']} best chunks, whole articles, into the prompt ({x['response_mode']}, its "
        f"own QA template). Ours splits into {o['chunk_size']}-word-piece passages (overlap "
        f"{o['chunk_overlap']}), searches {o['retrieval']} (k {o['top_k']}) and puts only the "
        f"sentences that answer into the prompt (at most {o['evidence_tokens']} tokens), after "
        "a system prompt (short rules, one worked example) whose state is computed once and "
        "reused. So ours embeds "
        f"{_ratio(ours['word_pieces'], li['word_pieces'])} the text LlamaIndex does, at "
        f"{ours['embed_rate']:,.0f} against {li['embed_rate']:,.0f} word pieces per second "
        "(its vectors see only the start of each article). llama.cpp reads prompts in batches "
        f"of {x['n_batch']} tokens there (the "
        f"default) and {o['n_batch']} here (fixed, for repeatable answers); the embedding batch "
        f"is {x['embed_batch']} there and {o['embed_batch']} here. The model file is "
        f"{_mapped(x['mmap'])} there and {_mapped(o['mmap'])} here (llama.cpp repacks most "
        "weights into memory of its own, so a mapped file's pages count in the peak as well). "
        "Its query engine is "
        "stateless, so the follow-up question is asked without its history there (ours "
        "rewrites it from the history first). Its index persists as JSON files and a FAISS "
        "file; ours as SQLite, FAISS and BM25 files with fsync.\n"
    )
    read_peaks = results[READ_SIDE]["peaks_mb"]
    read_mb = _median(read_peaks)
    body += (
        f"\n**Memory under the same setting.** Ours reads the model file into memory; "
        f"LlamaIndex memory-maps it (llama-cpp-python's default), and llama.cpp then holds the "
        f"repacked weights besides the mapped pages, which is most of the memory difference. "
        f"LlamaIndex run again with the model read into memory (`use_mmap=False`, the same "
        f"build and the first {MEMORY_QUESTIONS} questions in new processes, as for the other "
        f"two sides; the median of {len(read_peaks)}): peak {report.fmt(read_mb)} MB against ours "
        f"{report.fmt(ours['peak_mb'])} MB ({_ratio(ours['peak_mb'], read_mb)}).\n"
    )
    rounds = {key: (ours["rounds"][key], li["rounds"][key]) for key in ours["rounds"]}

    def per_round(key: str) -> list[float]:
        a, b = rounds[key]
        return [round(x / y, 4) for x, y in zip(a, b, strict=True)]

    targets = [
        report.target(
            "indexing time below LlamaIndex's",
            per_round("index_s"),
            1.0,
            f"ours {report.fmt(ours['index_s'])} s, LlamaIndex {report.fmt(li['index_s'])} s",
        ),
        report.target(
            "embedding throughput per word piece at least LlamaIndex's",
            per_round("embed_rate"),
            1.0,
            f"ours {ours['embed_rate']:,.0f}, LlamaIndex {li['embed_rate']:,.0f} word pieces/s "
            "(its stage includes its chunking and FAISS adds)",
            higher=True,
        ),
        report.target(
            "retrieval time (median) below LlamaIndex's",
            per_round("search_ms"),
            1.0,
            f"ours {report.fmt(ours['search_ms'])} ms, LlamaIndex {report.fmt(li['search_ms'])} ms",
        ),
        report.target(
            "time to first token (median) below LlamaIndex's",
            per_round("ttft_s"),
            1.0,
            f"ours {report.fmt(ours['ttft_s'])} s, LlamaIndex {report.fmt(li['ttft_s'])} s",
        ),
        report.target(
            "peak memory below LlamaIndex's (model memory-mapped there, read here)",
            per_round("peak_mb"),
            1.0,
            f"ours {report.fmt(ours['peak_mb'])} MB, LlamaIndex {report.fmt(li['peak_mb'])} MB; "
            f"both reading the model: LlamaIndex {report.fmt(read_mb)} MB",
        ),
        report.target(
            "peak memory below LlamaIndex's, both reading the model into memory",
            [round(o / x, 4) for o, x in zip(ours["rounds"]["peak_mb"], read_peaks, strict=True)],
            1.0,
            f"ours {report.fmt(ours['peak_mb'])} MB, LlamaIndex {report.fmt(read_mb)} MB",
        ),
    ]
    report.write_section(NAME, TITLE, body, targets, began=began)


def _mapped(mmap: bool) -> str:
    return "memory-mapped" if mmap else "read into memory"


def _mark(correct: bool | None) -> str:
    return "–" if correct is None else ("yes" if correct else "no")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llamaindex", description=__doc__.splitlines()[0]
    )
    parser.add_argument("serve", nargs="*", metavar="serve SIDE", help="(internal) one side")
    parser.add_argument("--model", help="answer model (default: rag's; smollm2-135m to try it)")
    parser.add_argument("--quick", action="store_true", help="every third seed question")
    args = parser.parse_args(argv)
    if args.serve:
        if (
            len(args.serve) != 2
            or args.serve[0] != "serve"
            or args.serve[1] not in (*SIDES, READ_SIDE)
        ):
            parser.error(f"use: serve {{{','.join((*SIDES, READ_SIDE))}}}")
        serve(args.serve[1], args.model)
        return 0
    run(args.quick, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
