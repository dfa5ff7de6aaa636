"""Helpers shared by the benchmarks: corpora as files, percentiles, peak memory, subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
EVAL = Path(os.environ.get("RAG_EVAL_DIR", PROJECT.parent / "shared" / "eval"))
CRANFIELD = EVAL / "cranfield"
SQUAD = EVAL / "xquad_en_dev.json"
SEEDS = PROJECT / "seeds"
SEED_QUESTIONS = EVAL / "seed_dev.jsonl"
PYTHON = sys.executable
T = TypeVar("T")


def environment() -> dict[str, str]:
    """The environment for child processes: offline, as the Makefile sets it."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


os.environ.update({k: v for k, v in environment().items() if k not in os.environ})


def documents(name: str) -> list[tuple[str, str, str]]:
    """(file name, title, text) of a corpus: "cranfield" (1,400 abstracts) or "squad"
    (the XQuAD English paragraphs), read with the project's own evaluation-set loader."""
    from rag import evalsets

    path = CRANFIELD if name == "cranfield" else SQUAD
    docs = evalsets.load(path).documents
    out = []
    for doc_id, title, text in docs:
        if not text.strip():
            continue  # Cranfield 471 and 995 are empty
        file = doc_id if doc_id.endswith(".txt") else f"{doc_id}.txt"
        out.append((file, " ".join(title.replace("_", " ").split()), text.strip()))
    return out


def write_corpus(docs: Sequence[tuple[str, str, str]], folder: Path) -> Path:
    """One .txt per document, the title as a heading line (as `rag eval` writes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, title, text in docs:
        body = f"# {title}\n\n{text}\n" if title else f"{text}\n"
        (folder / file).write_text(body, encoding="utf-8")
    return folder


def queries(name: str, limit: int | None = None) -> list[str]:
    """Real questions: Cranfield queries, SQuAD questions or the first-turn seed questions."""
    if name == "seeds":
        rows = [json.loads(line) for line in SEED_QUESTIONS.read_text().splitlines() if line]
        out = [r["question"] for r in rows if not r.get("history") and r.get("gold_doc")]
    else:
        from rag import evalsets

        out = [
            q.question for q in evalsets.load(CRANFIELD if name == "cranfield" else SQUAD).questions
        ]
    return out[:limit] if limit else out


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def peak_rss_mb(pid: int | str = "self") -> float:
    """The peak resident memory (VmHWM) of a process in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s*(\d+) kB", status, re.MULTILINE).group(1)) * 1024 / 1e6


def rss_mb(pid: int | str = "self") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s*(\d+) kB", status, re.MULTILINE).group(1)) * 1024 / 1e6


def run_json(args: Sequence[str], timeout: float = 3600) -> dict:
    """Run a child Python process that prints one JSON object as its last line of output."""
    done = subprocess.run(
        [PYTHON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
        cwd=PROJECT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall(args: Sequence[str], repeat: int, **kwargs: object) -> list[float]:
    """Seconds each of `repeat` runs of a command takes, start to exit."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(
            args, check=True, capture_output=True, env=environment(), cwd=PROJECT, **kwargs
        )
        times.append(time.perf_counter() - began)
    return times


def alternate(sides: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Each side's result in each of `rounds` rounds, run interleaved with the first side
    alternating (A B, B A, A B, …), so a drift in the machine's load or a warm cache falls on
    both sides alike."""
    names = list(sides)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(sides[name]())
    return out


def ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    """Round by round ours / baseline."""
    return [o / b for o, b in zip(ours, base, strict=True)]


def spread(values: Sequence[float]) -> str:
    """ "median (lowest–highest)" of a measurement's rounds."""
    values = sorted(values)
    mid = float(np.median(values))
    return f"{mid:.3g} ({values[0]:.3g}–{values[-1]:.3g})" if len(values) > 1 else f"{mid:.3g}"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
