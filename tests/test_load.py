"""Load: 8 chat sessions at once against one real page server, 5 questions each, small model.

The server runs in its own process (as `rag chat` does), so its memory is measured alone.
Results go to artifacts/load.json and docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import NO_FILTER, SMALL_MODEL, free_port
from gradio_client import Client

from rag import Config, Engine

pytestmark = [
    pytest.mark.load,
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

SESSIONS = 8
TURNS = 5
K = 1  # passages per question, and answers of at most MAX_TOKENS: the load, not the model
MAX_TOKENS = 16
# Measured rounds of TURNS questions per session; more (RAG_LOAD_ROUNDS=10) to watch memory.
ROUNDS = int(os.environ.get("RAG_LOAD_ROUNDS", "1"))
# Questions that lean on no earlier turn, so each is searched as asked and its passages are
# known in advance; each session asks a different run of them, tagged with its number.
QUESTIONS = [
    "What did Lappo threaten?",
    "Who is Roman Kostenko?",
    "What will Russian troops do if Belarus is attacked?",
    "When were the Union Resolve drills held?",
    "Who heads the border committee of Belarus?",
    "What did Lukashenko say about NATO?",
    "How many times was the railway sabotaged?",
    "Which country did Lappo threaten with cruel attacks?",
    "What happened at the Belarusian border with Poland?",
    "Who is Alexander Lukashenko?",
]

SERVER = """
import sys
from rag import Config, Engine, web

index_dir, port, model, max_tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
engine = Engine(
    Config.load(index_dir=index_dir, model=model, threads=1, max_tokens=int(max_tokens))
)
assert web.warm(engine) == []
app = web.build_app(engine)
url = web.launch(app, port=port, prevent_thread_lock=True)
print("ready", url, flush=True)
sys.stdin.read()  # serve until the test closes our input
app.close()
"""

_SEARCHED = re.compile(r"<code>(.*?)</code>(?: · page \d+)? · characters ([\d,]+)–([\d,]+)")


def asked(session: int, turn: int) -> str:
    return f"{QUESTIONS[(3 * session + turn) % len(QUESTIONS)]} [session {session}]"


def first(session: int) -> str:
    """The warm-up question of a session."""
    return f"{QUESTIONS[session]} [session {session}, first]"


def searched(panel: str) -> list[tuple[str, int, int]]:
    """(file, start, end) of the passages searched, as the sources panel lists them."""
    part = panel.split('class="rag-searched"', 1)[-1]
    return [(s, int(a.replace(",", "")), int(b.replace(",", ""))) for s, a, b in
            _SEARCHED.findall(part)]  # fmt: skip


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return str(content)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path):
    """(url, pid, index folder) of the page served by its own process."""
    index_dir = tmp_path_factory.mktemp("load") / "index"
    Engine(Config.load(index_dir=index_dir)).build([seeds_dir])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(index_dir),
            str(free_port()),
            SMALL_MODEL,
            str(MAX_TOKENS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, RAG_THREADS="1"),
    )
    try:
        line = ""
        deadline = time.monotonic() + 180
        while not line.startswith("ready"):
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            line = proc.stdout.readline()
        yield line.split()[1], proc.pid, index_dir
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def connect(url: str) -> list[Client]:
    """One client (one browser tab: its own session) per session, connected in parallel."""
    with ThreadPoolExecutor(SESSIONS) as pool:
        return list(pool.map(lambda _: Client(url, verbose=False), range(SESSIONS)))


def load_round(
    clients: list[Client], ask: Callable[[int], list[str]]
) -> tuple[dict[int, list[tuple[str, list, str]]], list[float]]:
    """All sessions started together, each asking its questions one after another:
    ({session: [(question, chat shown, sources panel)]}, seconds per answer)."""
    results: dict[int, list[tuple[str, list, str]]] = {s: [] for s in range(SESSIONS)}
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(SESSIONS)

    def chat(session: int) -> None:
        try:
            start.wait(timeout=60)
            for question in ask(session):
                began = time.perf_counter()
                job = clients[session].submit(
                    question, K, SMALL_MODEL, *NO_FILTER, api_name="/respond"
                )
                _, shown, panel, *_ = job.result(timeout=300)
                latencies.append(time.perf_counter() - began)
                results[session].append((question, shown, panel))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(s,), daemon=True) for s in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "the load did not finish in 10 minutes"
    return results, latencies


def test_eight_sessions_at_once_are_all_answered_apart_and_memory_settles(
    server: tuple, artifacts_dir: Path
) -> None:
    url, pid, index_dir = server
    expected = Engine(Config.load(index_dir=index_dir))  # the same search, done here
    clients = connect(url)
    # A first round, one question per session, brings the server to its working size (the
    # model's caches, Gradio's worker threads); memory is measured from there.
    load_round(clients, lambda s: [first(s)])
    before = memory_mb(pid)

    peak, done = before, threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.5):
            peak = max(peak, memory_mb(pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rounds: list[dict] = []
    for n in range(1, ROUNDS + 1):
        began = time.perf_counter()
        results, latencies = load_round(clients, lambda s: [asked(s, t) for t in range(TURNS)])
        wall = time.perf_counter() - began
        time.sleep(2)
        rounds.append(
            {
                "wall_s": round(wall, 1),
                "answers_per_minute": round(60 * len(latencies) / wall, 1),
                "mean_answer_s": round(sum(latencies) / len(latencies), 2),
                "slowest_answer_s": round(max(latencies), 2),
                "rss_after_mb": round(memory_mb(pid)),
            }
        )
        check_round(results, latencies, n, expected)
    done.set()
    watcher.join()

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),  # other work on the machine
        "sessions": SESSIONS,
        "questions_per_session": TURNS,
        "requests": SESSIONS * TURNS,
        "passages_per_question": K,
        "model": SMALL_MODEL,
        "threads": 1,
        "max_tokens": MAX_TOKENS,
        **{key: value for key, value in rounds[0].items() if key != "rss_after_mb"},
        "rss_before_mb": round(before),
        "rss_peak_mb": round(peak),
        "rss_after_mb": rounds[0]["rss_after_mb"],
    }
    if ROUNDS > 1:
        report["rounds"] = rounds
    (artifacts_dir / "load.json").write_text(json.dumps(report, indent=1) + "\n")
    print("\nload:", json.dumps(report))

    # Memory settles: 40 answers later the server holds at most 80 MB more than before (seen:
    # 30-35 MB; a leak of 2 MB per answer would fail).
    after = [r["rss_after_mb"] for r in rounds]
    assert after[0] - before < 80, report
    if ROUNDS >= 6:
        # Over more rounds it keeps rising for a while (partly freed memory that glibc keeps
        # in its per-thread arenas: malloc_trim gives back 20-30 MB), then levels off: the
        # last three rounds set no new high. Seen: 899, 914, 931, 931, 932, 949, 971, 965,
        # 970, 966 MB after each of ten rounds.
        assert max(after[-3:]) - max(after[:-3]) < 20, report


def check_round(
    results: dict[int, list[tuple[str, list, str]]], latencies: list[float], n: int,
    expected: Engine,
) -> None:  # fmt: skip
    """Every request of round `n` was answered, in its own session, from its own passages."""
    assert len(latencies) == SESSIONS * TURNS
    for session, turns in results.items():
        mine = [first(session)] + [asked(session, t) for t in range(TURNS)] * n
        _, shown, _ = turns[-1]
        # The conversation each session sees is its own turns, in order, and only those.
        assert [text_of(m) for m in shown if m["role"] == "user"] == mine
        assert [m["role"] for m in shown] == ["user", "assistant"] * len(mine)
        assert all(text_of(m).strip() and not text_of(m).startswith("⚠") for m in shown)
        for question, _, panel in turns:
            # Each answer's sources are the ones its own question finds.
            hits = expected.search(question, K)
            want = [(h.chunk.source, h.chunk.start, h.chunk.end) for h in hits]
            assert searched(panel) == want, (session, question)
