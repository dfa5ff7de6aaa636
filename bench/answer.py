"""Answer latency with the default model on the seed questions (issues 7 and 9).

Two sections of docs/BENCHMARKS.md come from one run:

- "answer": time to first token through `answer()` against a raw llama-cpp-python call with
  the identical prompt in the same process, the effect of reusing the system prompt's cached
  state, and prompt-lookup speculative decoding against plain decoding.
- "seed-speed": every seed question's prompt tokens, time to first token, total time and
  correctness through this tree; with RAG_BENCH_COMPARE=1 also before the speed work (a
  source tree at BEFORE, commit e8db527) and through LlamaIndex's usual pipeline.

Each side runs in its own process (`python -m bench.answer worker ...`) so the models, caches
and memory of one cannot help or hurt the other.
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
from pathlib import Path

from bench import measure, report

BEFORE = "e8db527"  # the last commit before the evidence selection and prefix-cache work
WARMUP = "Who is Alexander Lukashenko?"
ROUNDS = 3  # rounds of ours against raw llama-cpp-python on the same prompts
# The "before" tree and LlamaIndex columns of "seed-speed" take a quarter of an hour more; the
# LlamaIndex comparison has its own benchmark (bench.llamaindex). RAG_BENCH_COMPARE=1 adds them.
COMPARE = os.environ.get("RAG_BENCH_COMPARE") == "1"  # not a development question: loads and warms


def run(quick: bool = False) -> dict:
    began = datetime.datetime.now().astimezone()
    questions = _questions()
    if quick:
        questions = questions[:6]
    with tempfile.TemporaryDirectory(prefix="rag-bench-answer-") as tmp:
        after = measure.run_json(
            [
                "-m",
                "bench.answer",
                "worker",
                str(measure.PROJECT),
                str(Path(tmp) / "after"),
                "--raw",
            ]  # fmt: skip
            + (["--quick"] if quick else []),
            timeout=7200,
        )
        before = _before(Path(tmp), quick) if COMPARE else None
    llama_index = _llama_index(questions) if COMPARE else None
    dump = measure.PROJECT / "artifacts" / "bench-answer.json"  # every answer, for a closer look
    dump.parent.mkdir(exist_ok=True)
    dump.write_text(json.dumps({"after": after, "before": before, "llama_index": llama_index}))
    targets = _write_answer(began, after)
    _write_speed(began, questions, before, after, llama_index)
    return {"after": after, "before": before, "llama_index": llama_index, "targets": targets}


# -- one side, in its own process ---------------------------------------------------------


def worker(src: Path, index_dir: Path, raw: bool, quick: bool) -> dict:
    """Answer every seed question with the rag package found in `src`; time each answer."""
    sys.path.insert(0, str(src))
    import rag
    from rag import metrics

    assert Path(rag.__file__).resolve().is_relative_to(src.resolve()), rag.__file__
    config = rag.Config.load(corpus=src / "seeds", index_dir=index_dir)
    engine = rag.Engine(config, build_missing=True)
    engine.search(WARMUP)  # index, embedder and (below) model loaded before any timing
    llm = engine.llm
    prompts: list[tuple[str, dict]] = []
    _record_prompts(llm, prompts)
    rawllm = _raw_model(llm) if raw else None
    engine.answer(WARMUP)  # the system prompt's state is cached from here on, as in the chat
    rows = []
    questions = _questions()[: 6 if quick else None]
    for q in questions:
        prompts.clear()
        row = {"id": q["id"]} | _timed(engine, q)
        row["correct"] = _correct(row, q, metrics)
        if raw and prompts:
            text, options = prompts[-1]
            row["prompt"] = (text, options)
            row["raw"] = _raw_call(rawllm, text, options)
            row["rounds"] = [{"ours": row["llm_ttft_s"], "raw": row["raw"]["ttft_s"]}]
            llm.forget()  # nothing cached or saved: the same prompt read cold
            row["cold"] = _timed(engine, q)  # ours with nothing cached, the same prompt
        rows.append(row)
    # More rounds of ours against raw on the same prompts, the first side alternating, so a
    # drift in the machine's load falls on both.
    for r in range(1, (2 if quick else ROUNDS) if raw else 1):
        for q, row in zip(questions, rows, strict=True):
            if "prompt" not in row:
                continue
            text, options = row["prompt"]
            sides = {
                "ours": lambda q=q: _timed(engine, q)["llm_ttft_s"],
                "raw": lambda text=text, options=options: _raw_call(rawllm, text, options)[
                    "ttft_s"
                ],
            }
            order = ("raw", "ours") if r % 2 else ("ours", "raw")
            row["rounds"].append({side: sides[side]() for side in order})
    for row in rows:
        row.pop("prompt", None)
    if raw:
        # The raw model again with prompt-lookup speculative decoding, on the same prompts.
        rows_by_id = {r["id"]: r for r in rows}
        spec = _raw_model(llm, lookup=True)
        for q in questions:
            prompts.clear()
            engine.answer(q["question"], q["history"])
            if prompts:
                text, options = prompts[-1]
                try:
                    rows_by_id[q["id"]]["lookup"] = _raw_call(spec, text, options)
                except ValueError as exc:  # llama-cpp-python's draft path overran its context
                    print(f"no prompt lookup for {q['id']}: {exc}", file=sys.stderr)
    return {
        "rows": rows,
        "load_s": getattr(llm, "load_s", None),
        "peak_rss_mb": measure.peak_rss_mb(),
        "model": str(llm.path),
    }


def _timed(engine: object, q: dict) -> dict:
    from rag import Answer

    began = time.perf_counter()
    first = None
    pieces = 0
    result = None
    for item in engine.stream(q["question"], q["history"]):
        if isinstance(item, Answer):
            result = item
        elif item:
            pieces += 1
            first = first or time.perf_counter()
    ended = time.perf_counter()
    timings = result.timings
    return {
        "ttft_s": (first or ended) - began,
        "total_s": ended - began,
        "prompt_tokens": timings.get("prompt_tokens"),
        "cached_tokens": timings.get("cached_tokens"),
        "completion_tokens": timings.get("completion_tokens"),
        "llm_ttft_s": timings.get("ttft_s"),
        "tokens_per_s": timings.get("tokens_per_s"),
        "text": result.text,
        "refused": result.refused,
        "citations": [c.source for c in result.citations],
    }


def _correct(row: dict, q: dict, metrics: object) -> bool:
    import re

    if not q["must"]:
        return bool(row["refused"])
    plain = re.sub(r"\s*\[\d+\]", "", row["text"])
    return not row["refused"] and metrics.keyword_groups_ok(plain, q["must"])


def _record_prompts(llm: object, prompts: list) -> None:
    """Keep each prompt the engine sends to the model, with its generation options."""
    # The engine renders chats through `stream_prompt` (older checkouts: `stream` took text).
    name = "stream_prompt" if hasattr(llm, "stream_prompt") else "stream"
    real = getattr(llm, name)

    def stream(prompt: str, max_tokens: int = 256, temperature: float = 0.0, stop=(), prefix=""):  # noqa: ANN001, ANN202
        if prefix:  # the answer's prompt, not the follow-up rewrite's
            prompts.append((prompt, {"max_tokens": max_tokens, "stop": list(stop)}))
        extra = {"prefix": prefix} if prefix else {}  # the "before" checkout has no prefix
        return real(prompt, max_tokens, temperature, stop, **extra)

    setattr(llm, name, stream)


def _raw_model(llm: object, lookup: bool = False) -> object:
    """A second llama_cpp.Llama on the same file, with llama-cpp-python's defaults."""
    import llama_cpp

    options = {}
    if lookup:
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        options["draft_model"] = LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=8)
    return llama_cpp.Llama(
        model_path=str(llm.path),
        n_ctx=llm.n_ctx if not lookup else 2048,  # draft models keep logits for every position
        n_threads=llm._llama.n_threads,
        seed=0,
        verbose=False,
        **options,
    )


def _raw_call(llama: object, prompt: str, options: dict) -> dict:
    """Greedy completion of `prompt` straight through llama-cpp-python, timed like ours."""
    import llama_cpp

    sampled: list[float] = []

    def count(_ids: object, _logits: object) -> bool:
        sampled.append(time.perf_counter())
        return False

    # What llama-cpp-python will reuse of its last prompt and answer (it always reads the last
    # prompt token again), counted the way its generate() does.
    tokens = llama.tokenize(prompt.encode("utf-8"), special=True)
    held = llama.input_ids[: llama.n_tokens].tolist()
    cached = min(llama.longest_token_prefix(held, tokens), len(tokens) - 1)
    began = time.perf_counter()
    text = ""
    for chunk in llama.create_completion(
        prompt,
        max_tokens=options["max_tokens"],
        temperature=0.0,
        top_k=1,
        repeat_penalty=1.0,
        stop=options["stop"],
        stream=True,
        stopping_criteria=llama_cpp.StoppingCriteriaList([count]),
    ):
        text += chunk["choices"][0]["text"]
    ended = time.perf_counter()
    decode = sampled[-1] - sampled[0] if len(sampled) > 1 else 0.0
    return {
        "ttft_s": (sampled[0] if sampled else ended) - began,
        "total_s": ended - began,
        "cached_tokens": max(cached, 0),
        "completion_tokens": len(sampled),
        "tokens_per_s": (len(sampled) - 1) / decode if decode > 0 else 0.0,
        "text": text,
    }


# -- the other sides ------------------------------------------------------------------------


def _before(tmp: Path, quick: bool) -> dict | None:
    """The same questions through the code of commit BEFORE, checked out beside this tree."""
    tree = tmp / "before-src"
    try:
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), BEFORE],
            cwd=measure.PROJECT, check=True, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no 'before' run: cannot check out {BEFORE}: {exc}", file=sys.stderr)
        return None
    try:
        return measure.run_json(
            ["-m", "bench.answer", "worker", str(tree), str(tmp / "before")]
            + (["--quick"] if quick else []),
            timeout=7200,
        )
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)],
            cwd=measure.PROJECT, capture_output=True,
        )  # fmt: skip


def _llama_index(questions: list[dict]) -> dict | None:
    """The same questions through LlamaIndex's usual pipeline (bench.llamaindex), if present."""
    try:
        return measure.run_json(
            ["-m", "bench.answer", "llamaindex", json.dumps([q["id"] for q in questions])],
            timeout=7200,
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"no LlamaIndex run: {exc}", file=sys.stderr)
        return None


def _llama_index_worker(ids: list[str]) -> dict:
    from bench import llamaindex

    questions = [q for q in _questions() if q["id"] in ids]
    return {"rows": llamaindex.llamaindex_answers(questions), "peak_rss_mb": measure.peak_rss_mb()}


def _questions() -> list[dict]:
    lines = measure.SEED_QUESTIONS.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        if line.strip():
            q = json.loads(line)
            q["history"] = q.get("history") or []
            q["must"] = q.get("must") or []
            out.append(q)
    return out


# -- the sections ----------------------------------------------------------------------------


def _median(rows: list[dict], key: str, side: str | None = None) -> float | None:
    values = [(r[side] if side else r).get(key) for r in rows if (r.get(side) if side else r)]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _write_answer(began: datetime.datetime, after: dict) -> list[dict]:
    rows = [r for r in after["rows"] if r.get("raw")]  # refused before the model: no prompt
    table = []
    for r in rows:
        spec = r.get("lookup") or {}
        table.append([
            r["id"], r["prompt_tokens"], r["cached_tokens"], r["raw"].get("cached_tokens"),
            r["llm_ttft_s"], r["raw"]["ttft_s"],
            r["llm_ttft_s"] / r["raw"]["ttft_s"], r["cold"]["llm_ttft_s"], r["ttft_s"],
            r["tokens_per_s"], r["raw"]["tokens_per_s"], spec.get("tokens_per_s"),
            "same" if spec.get("text", "").strip() == r["raw"]["text"].strip() else "differs",
        ])  # fmt: skip
    ours, raw = _median(rows, "llm_ttft_s"), _median(rows, "ttft_s", "raw")
    cold = _median(rows, "llm_ttft_s", "cold")
    e2e = _median(rows, "ttft_s")
    tps, raw_tps = _median(rows, "tokens_per_s"), _median(rows, "tokens_per_s", "raw")
    spec_tps = _median(rows, "tokens_per_s", "lookup")
    ratio = ours / raw if ours and raw else None
    # Each round's ratio: the median over the questions of ours against the median of raw.
    count = min(len(r["rounds"]) for r in rows)
    per_round = [
        statistics.median(r["rounds"][i]["ours"] for r in rows)
        / statistics.median(r["rounds"][i]["raw"] for r in rows)
        for i in range(count)
    ]
    targets = [
        report.target(
            "time to first token through `answer()` ≤ 1.05× raw llama-cpp-python (model only)",
            [round(x, 4) for x in per_round],
            1.05,
            f"median ours {ours:.2f} s, raw {raw:.2f} s on the identical prompts (round 1); "
            f"{count} rounds, the first side alternating",
        )
    ]
    body = (
        "The default model (qwen2.5-coder-1.5b, 2 threads) on the seed questions. *ours* is "
        "`Engine.stream` (what `answer()` runs) after one warm-up question, so the system "
        "prompt's state is cached as it is in the chat; *raw* is a second `llama_cpp.Llama` on "
        "the same file with llama-cpp-python's defaults, given the identical prompt string "
        "right after ours (it keeps its own prefix cache between calls, as llama-cpp-python "
        "does by default); *cold* is ours again with the cache emptied first. Model TTFT is "
        "from the model call to the first sampled token; end-to-end TTFT adds the follow-up "
        "rewrite, retrieval and evidence selection. *lookup* is the raw model with "
        "llama-cpp-python's prompt-lookup speculative decoding "
        "(`LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=8)`).\n\n"
        + report.table(
            [
                "question",
                "prompt tokens",
                "ours cached",
                "raw cached",
                "ours TTFT s",
                "raw TTFT s",
                "ours / raw",
                "ours cold TTFT s",
                "end-to-end TTFT s",
                "ours tok/s",
                "raw tok/s",
                "lookup tok/s",
                "lookup text vs raw",
            ],
            table,
        )  # fmt: skip
        + f"\nMedians of round 1: model TTFT ours {ours:.2f} s, raw {raw:.2f} s ({ratio:.2f}×); "
        f"ratio per round {', '.join(f'{x:.3f}' for x in per_round)}; with "
        f"nothing cached {cold:.2f} s, so reusing the cached system prompt saves "
        f"{cold - ours:.2f} s per question; end-to-end TTFT {e2e:.2f} s. Generation "
        f"{tps:.1f} tok/s ours, {raw_tps:.1f} raw, "
        + (f"{spec_tps:.1f} with prompt lookup.\n" if spec_tps else "prompt lookup not run.\n")
    )
    report.write_section("answer", "Answer latency", body, targets, began)
    return targets


def _write_speed(
    began: datetime.datetime,
    questions: list[dict],
    before: dict | None,
    after: dict,
    llama_index: dict | None,
) -> None:
    sides = {"before": before, "after": after, "LlamaIndex": llama_index}
    sides = {name: side for name, side in sides.items() if side is not None}
    by = {name: {r["id"]: r for r in side["rows"]} if side else {} for name, side in sides.items()}
    header = ["question"]
    for name in sides:
        header += [f"{name} prompt tokens", f"{name} TTFT s", f"{name} total s", f"{name} ok"]
    rows = []
    for q in questions:
        row = [q["id"]]
        for name in sides:
            r = by[name].get(q["id"]) or {}
            ok = r.get("correct")
            row += [r.get("prompt_tokens"), r.get("ttft_s"), r.get("total_s"),
                    None if ok is None else ("yes" if ok else "**no**")]  # fmt: skip
        rows.append(row)
    med = ["median"]
    for name in sides:
        got = list(by[name].values())
        correct = [r.get("correct") for r in got if r.get("correct") is not None]
        med += [_median(got, "prompt_tokens"), _median(got, "ttft_s"), _median(got, "total_s"),
                f"{sum(correct)}/{len(correct)}" if correct else None]  # fmt: skip
    rows.append(med)
    ttft, total = _median(after["rows"], "ttft_s"), _median(after["rows"], "total_s")
    targets = [
        report.target(
            "median time to first token < 3 s (seed questions)",
            round(ttft, 2),
            3.0,
            f"{ttft:.2f} s end to end through `answer()`",
        ),  # fmt: skip
        report.target(
            "median total < 6 s (seed questions)",
            round(total, 2),
            6.0,
            f"{total:.2f} s end to end through `answer()`",
        ),  # fmt: skip
    ]
    if before:
        old = sum(bool(r.get("correct")) for r in before["rows"])
        new = sum(bool(r.get("correct")) for r in after["rows"])
        targets.append(
            report.target("seed questions correct: not fewer than before", new, old,
                          f"{new}/{len(after['rows'])} after, {old} before", higher=True)
        )  # fmt: skip
    body = (
        "Each seed development question through `answer()` with the default model, after one "
        "warm-up question (the model loaded and the system prompt cached, as in a running "
        "chat): *after* is this tree. "
        + (
            f"*before* is the code of commit {BEFORE} (whole chunks in the prompt, a longer "
            "system prompt with a worked example); *LlamaIndex* is its usual query engine over "
            "the same seeds with the same embedding and answer models (bench.llamaindex). "
            if COMPARE
            else "(Run with RAG_BENCH_COMPARE=1 for the tree before the speed work and "
            "LlamaIndex beside it; LlamaIndex has its own section.) "
        )
        + "TTFT and total are end to end, from the question to the first "
        "text and to the finished answer; *ok* is the question's `must` rule (or a refusal "
        "for an unanswerable one).\n\n" + report.table(header, rows)
    )
    title = "Seed questions: before and after" if COMPARE else "Seed questions"
    report.write_section("seed-speed", title, body, targets, began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answer")
    sub = parser.add_subparsers(dest="command")
    work = sub.add_parser("worker")
    work.add_argument("src", type=Path)
    work.add_argument("index_dir", type=Path)
    work.add_argument("--raw", action="store_true")
    work.add_argument("--quick", action="store_true")
    li = sub.add_parser("llamaindex")
    li.add_argument("ids")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args.src, args.index_dir, args.raw, args.quick)))
    elif args.command == "llamaindex":
        print(json.dumps(_llama_index_worker(json.loads(args.ids))))
    else:
        run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
