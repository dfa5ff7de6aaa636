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

from . import report

QUESTIONS = report.PROJECT.parent / "shared" / "eval" / "seed_dev.jsonl"


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
        local = Engine(config)
        remote = Engine(config.with_(model=f"openai:{url}"))
        for engine in (local, remote):  # models loaded and the system turn read once each
            engine.answer("Who is Alexander Lukashenko?")
        rows = []
        for q in questions:
            here = timed(local, q["question"], q.get("history"))
            there = timed(remote, q["question"], q.get("history"))
            rows.append((q["id"], here, there))
            print(q["id"], here["total_s"], there["total_s"], file=sys.stderr, flush=True)
    same = sum(h["text"] == t["text"] for _, h, t in rows)
    table = report.table(
        ["question", "in process: first piece s", "total s", "server: first piece s", "total s",
         "same answer"],
        [(i, h["first_s"], h["total_s"], t["first_s"], t["total_s"], h["text"] == t["text"])
         for i, h, t in rows],
    )  # fmt: skip

    def median(key: str, side: int) -> float:
        return statistics.median(r[side][key] for r in rows)

    body = (
        f"Model `{config.model}` run by llama-cpp-python in this process, and the same file behind "
        "llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, default "
        "settings, 127.0.0.1) used through `--model openai:URL`; the same index, evidence and "
        "prompt; each seed question asked in process, then through the server, one run.\n\n"
        f"| median over {len(rows)} questions | in process | through the server | ratio |\n"
        "|---|---|---|---|\n"
        f"| time to first piece (s) | {median('first_s', 1):.2f} | {median('first_s', 2):.2f} | "
        f"{median('first_s', 2) / median('first_s', 1):.2f}× |\n"
        f"| total (s) | {median('total_s', 1):.2f} | {median('total_s', 2):.2f} | "
        f"{median('total_s', 2) / median('total_s', 1):.2f}× |\n\n"
        f"Identical answers: {same} of {len(rows)}. The load average is in the lines above: "
        "llama-cpp-python's server runs one llama.cpp thread by default and this process all "
        "cores, and two spin-waiting threads on a busy two-core machine can run many times "
        f"slower, so compare runs on a quiet machine only.\n\n{table}\n"
    )
    report.write_section("remote", "Answer model through an OpenAI-compatible server", body)
