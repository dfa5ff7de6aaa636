"""The answer model in process against the same model behind llama-cpp-python's
OpenAI-compatible server (`--model openai:URL`): time to first piece and total per seed
question, asked in turns (in process, then through the server) on the same index."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from rag import Answer, Config, Engine
from rag.models import resolve

from . import measure, report

QUESTIONS = report.PROJECT.parent / "shared" / "eval" / "seed_dev.jsonl"


ROUNDS = 3  # every question both ways in each round


@contextlib.contextmanager
def model_server(path: Path, n_ctx: int, port: int) -> Iterator[str]:
    """llama-cpp-python's server on 127.0.0.1 running the GGUF file; yields its base URL."""
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(n_ctx), "--seed", "0", "--verbose", "False",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama-cpp-python's server did not start") from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def timed(engine: Engine, question: str, history: list | None) -> dict:
    began = time.perf_counter()
    first = None
    result = None
    for item in engine.stream(question, history):
        if isinstance(item, Answer):
            result = item
        elif first is None:
            first = time.perf_counter() - began
    assert result is not None
    total = time.perf_counter() - began
    return {"first_s": first if first is not None else total, "total_s": total, "text": result.text}


def run(quick: bool = False) -> None:
    import socket

    config = Config.load()
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip()][: 5 if quick else None]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = resolve(config.model, Path(config.models_dir))
    with model_server(path, config.n_ctx, port) as url:
        # The seeds index is built on first use when missing (a fresh checkout), untimed.
        local = Engine(config, build_missing=True)
        remote = Engine(config.with_(model=f"openai:{url}"), build_missing=True)
        for engine in (local, remote):  # models loaded and the system turn read once each
            engine.answer("Who is Alexander Lukashenko?")
        rounds = 1 if quick else ROUNDS
        runs: list[list[tuple[str, dict, dict]]] = []
        for r in range(rounds):
            runs.append([])
            for i, q in enumerate(questions):
                ask = {
                    "here": lambda q=q: timed(local, q["question"], q.get("history")),
                    "there": lambda q=q: timed(remote, q["question"], q.get("history")),
                }
                got = {
                    side: ask[side]()
                    for side in (("here", "there"), ("there", "here"))[(r + i) % 2]
                }
                runs[-1].append((q["id"], got["here"], got["there"]))
                print(r, q["id"], got["here"]["total_s"], got["there"]["total_s"], file=sys.stderr)
    rows = runs[0]
    same = sum(h["text"] == t["text"] for run in runs for _, h, t in run)
    table = report.table(
        ["question", "in process: first piece s", "total s", "server: first piece s", "total s",
         "same answer"],
        [(i, h["first_s"], h["total_s"], t["first_s"], t["total_s"], h["text"] == t["text"])
         for i, h, t in rows],
    )  # fmt: skip

    def median(key: str, side: int, run: list | None = None) -> float:
        return statistics.median(r[side][key] for r in (run or rows))

    def ratios(key: str) -> list[float]:
        return [round(median(key, 2, run) / median(key, 1, run), 4) for run in runs]

    def medians(key: str, side: int) -> float:
        return statistics.median(median(key, side, run) for run in runs)

    first, total = ratios("first_s"), ratios("total_s")
    body = (
        f"Model `{config.model}` run by llama-cpp-python in this process, and the same file behind "
        "llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, default "
        "settings, 127.0.0.1) used through `--model openai:URL`; the same index, evidence and "
        f"prompt; every seed question asked both ways, {len(runs)} round(s), the first side "
        "alternating from question to question and round to round. Medians over the questions "
        "in each round, then over the rounds; the ratio is taken round by round.\n\n"
        f"| median over {len(rows)} questions | in process | through the server | ratio "
        "(spread) |\n|---|---|---|---|\n"
        f"| time to first piece (s) | {medians('first_s', 1):.2f} | {medians('first_s', 2):.2f} "
        f"| {measure.spread(first)}× |\n"
        f"| total (s) | {medians('total_s', 1):.2f} | {medians('total_s', 2):.2f} | "
        f"{measure.spread(total)}× |\n\n"
        f"Identical answers: {same} of {len(rows) * len(runs)}. llama-cpp-python's server runs "
        "one llama.cpp thread by default and this process all cores, and two spin-waiting "
        "threads on a busy two-core machine can run many times slower, so compare runs on a "
        f"quiet machine only. The first round, question by question:\n\n{table}\n"
    )
    targets = [
        report.target(
            "time to first piece through an OpenAI-compatible server ≤ 1.10× in process",
            first,
            1.10,
            f"in process {medians('first_s', 1):.2f} s, server {medians('first_s', 2):.2f} s",
        )
    ]
    report.write_section(
        "remote", "Answer model through an OpenAI-compatible server", body, targets
    )
