"""The answer model behind a real OpenAI-compatible server (llama-cpp-python's own, on
127.0.0.1, with the small model): the same answers as in process, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SMALL_MODEL, free_port, stop

from rag import Config, Engine, ModelUnavailable, RagError
from rag.models import resolve
from rag.remote import RemoteLLM

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key-not-secret"
SETTINGS = {"max_tokens": 64, "threads": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of llama-cpp-python's server running the small model, with an API key."""
    path = resolve(SMALL_MODEL, Config.load().models_dir)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--seed", "0",
        "--api_key", KEY, "--verbose", "False",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}
                )
                urllib.request.urlopen(request, timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the model server did not start: {log.read_text()}"
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("remote-index")
    Engine(Config.load(index_dir=folder, model=SMALL_MODEL)).build([seeds_dir])
    return folder


@pytest.fixture()
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RAG_API_KEY", KEY)


def seed_questions() -> list[dict]:
    lines = (ROOT.parent / "shared" / "eval" / "seed_dev.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_answers_through_the_server_equal_the_answers_in_process(
    server: str, index_dir: Path, keyed: None
) -> None:
    local = Engine(Config.load(index_dir=index_dir, model=SMALL_MODEL, **SETTINGS))
    remote = Engine(Config.load(index_dir=index_dir, model=f"openai:{server}", **SETTINGS))
    assert isinstance(remote.llm, RemoteLLM)
    # The server counts tokens as the model here does, so both choose the same evidence.
    text = "Lappo said the answer will be “immediate and cruel” [1]."
    assert remote.llm.count_tokens(text) == local.llm.count_tokens(text)
    questions = seed_questions()
    assert len(questions) >= 15
    for q in questions:
        history = q.get("history")
        here = local.answer(q["question"], history)
        there = remote.answer(q["question"], history)
        assert there.draft == here.draft, q["id"]
        assert there.text == here.text, q["id"]
        assert [c.source for c in there.citations] == [c.source for c in here.citations]
        assert there.outcome == here.outcome
    assert there.timings["ttft_s"] > 0 and there.timings["completion_tokens"] > 0


def test_streaming_through_the_server_yields_pieces_then_the_answer(
    server: str, index_dir: Path, keyed: None
) -> None:
    remote = Engine(Config.load(index_dir=index_dir, model=f"openai:{server}", **SETTINGS))
    items = list(remote.stream("Who is Roman Kostenko?"))
    pieces, answer = items[:-1], items[-1]
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip() == answer.draft


def test_a_server_that_is_down_fails_with_one_clear_line(index_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = Engine(Config.load(index_dir=index_dir, model=f"openai:{url}", **SETTINGS))
    with pytest.raises(ModelUnavailable, match="cannot be reached") as caught:
        engine.answer("What did Lappo threaten?")
    assert url in str(caught.value) and "\n" not in str(caught.value)


def test_a_slow_server_fails_after_the_timeout(server: str, index_dir: Path, keyed: None) -> None:
    config = Config.load(index_dir=index_dir, model=f"openai:{server}", timeout=0.05, **SETTINGS)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="did not answer within 0.05 s"):
        Engine(config).answer("What did Lappo threaten?")
    assert time.monotonic() - started < 30


def test_a_server_error_is_reported_with_its_message(
    server: str, index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_API_KEY", "a-wrong-key")
    engine = Engine(Config.load(index_dir=index_dir, model=f"openai:{server}", **SETTINGS))
    with pytest.raises(ModelUnavailable, match="answered 401"):
        engine.answer("What did Lappo threaten?")
    monkeypatch.setenv("RAG_API_KEY", KEY)
    wrong_path = server.removesuffix("/v1") + "/nowhere/v1"
    engine = Engine(Config.load(index_dir=index_dir, model=f"openai:{wrong_path}", **SETTINGS))
    with pytest.raises(ModelUnavailable, match="answered 404"):
        engine.answer("What did Lappo threaten?")


def test_the_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-variable")
    llm = RemoteLLM.from_setting("openai:http://127.0.0.1:9/v1#qwen")
    assert llm.model == "qwen" and llm.base_url == "http://127.0.0.1:9/v1"
    assert llm._http.headers["Authorization"] == "Bearer from-openai-variable"
    with pytest.raises(RagError, match="openai:URL"):
        RemoteLLM.from_setting("openai:127.0.0.1:9")


def test_without_a_tokenizer_on_the_server_tokens_are_overestimated() -> None:
    llm = RemoteLLM(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens: no tokenizer
    text = "The answer will be immediate and cruel, Lappo said."
    assert llm.count_tokens(text) >= len(text) // 3
