"""Answer-in-evidence recall: of the questions whose gold answer is in the passages found, how
often the evidence put into the prompt still holds it, for several budgets and window sizes,
against the whole passages (no answer model run; its tokenizer counts the cost)."""

from __future__ import annotations

import statistics
import sys
import time

from rag import Config, metrics
from rag.evalsets import load
from rag.evaluate import _dataset_index

from . import report

DATA = report.PROJECT.parent / "shared" / "eval" / "xquad_en_dev.json"
# (budget in tokens, sentences kept on each side); budget 0 is the whole passages.
VARIANTS = [(0, 0), (160, 0), (160, 1), (240, 1), (320, 1), (400, 1)]


def contains(text: str, answers: tuple[str, ...]) -> bool:
    said = f" {metrics.normalize_answer(text)} "
    return any(f" {metrics.normalize_answer(a)} " in said for a in answers)


def measure(limit: int, part: tuple[int, int] = (1, 2)) -> dict:
    config = Config.load()
    evalset = load(DATA, limit=limit, seed=0, part=part)
    engine, _, _ = _dataset_index(evalset, config, None, progress=False)
    llm = engine.llm
    rows = {v: [] for v in VARIANTS}
    tokens = {v: [] for v in VARIANTS}
    found = 0
    began = time.perf_counter()
    for q in evalset.questions:
        hits = engine.search(q.question, config.k)
        if not contains(" ".join(h.chunk.text for h in hits), q.answers):
            continue  # retrieval lost it: not evidence selection's doing
        found += 1
        for budget, context in VARIANTS:
            excerpts = engine.evidence(q.question, hits, budget=budget, context=context)
            text = " ".join(e.text for e in excerpts)
            rows[(budget, context)].append(contains(text, q.answers))
            tokens[(budget, context)].append(llm.count_tokens(text))
    return {
        "part": list(part),
        "questions": len(evalset.questions),
        "found": found,
        "seconds": time.perf_counter() - began,
        "variants": [
            {
                "budget": b,
                "context": c,
                "recall": sum(rows[(b, c)]) / max(1, found),
                "tokens_mean": statistics.mean(tokens[(b, c)]) if tokens[(b, c)] else 0,
            }
            for b, c in VARIANTS
        ],
    }


def section(result: dict) -> str:
    """The BENCHMARKS.md section for a `measure` result."""
    lines = [
        f"XQuAD sample of {result['questions']} questions (part {result['part'][0]}/"
        f"{result['part'][1]} of the ids, seed 0; the budget was chosen on part 1/2, so part 2/2 "
        "is the sample it was not tuned on), k = 4, "
        f"hybrid retrieval; {result['found']} have a gold answer inside the four passages "
        "found. Recall is the share of those whose gold answer is still inside the evidence "
        "given to the model; tokens are the answer model's. The shipped setting is 240 tokens "
        "with one sentence on each side (`RAG_EVIDENCE_TOKENS`, `rag.evidence.CONTEXT`); before "
        "this change it was 160 tokens with one sentence before each chosen one.",
        "",
        "| evidence | sentences around each chosen one | answer-in-evidence recall | tokens (mean) |",
        "|---|---|---|---|",
    ]
    for v in result["variants"]:
        what = "whole passages" if v["budget"] == 0 else f"best sentences, {v['budget']} tokens"
        around = "—" if v["budget"] == 0 else str(v["context"])
        lines.append(f"| {what} | {around} | {v['recall']:.3f} | {v['tokens_mean']:.0f} |")
    return "\n".join(lines)


def run(quick: bool = False) -> None:
    result = measure(60 if quick else 300, part=(2, 2))  # the sample not tuned on
    text = section(result)
    print(text, file=sys.stderr)
    report.write_section("evidence", "Answer-in-evidence recall", text)
