"""`rag serve`: the OpenAI-compatible API, asked with the official `openai` client over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import openai
import pytest
from conftest import SEEDS, SMALL_MODEL, free_port

from rag import Config, Engine, web
from rag.serve import openai_api

QUESTION = "What did Lappo threaten?"
# The Lappo article, whichever seed file holds it.
LAPPO = next(p.name for p in sorted(SEEDS.glob("*.txt")) if "Lappo" in p.read_text("utf-8"))
LOGIN = ("alice", "s3cret pass")


@contextlib.contextmanager
def serving(engine: Engine, auth: tuple[str, str] | None = None) -> Iterator[str]:
    """The base URL of the real API server on 127.0.0.1, run in a thread; stopped on exit."""
    server = openai_api.server(engine, port=free_port(), auth=auth, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("api")
    shutil.copytree(SEEDS, root / "corpus")
    config = Config.load(
        corpus=root / "corpus",
        index_dir=root / "index",
        data_dir=root / "data",
        model=SMALL_MODEL,
        max_tokens=96,
    )
    engine = Engine(config)
    engine.build([config.corpus])
    assert web.warm(engine) == []
    return engine


@pytest.fixture(scope="module")
def base_url(engine: Engine) -> Iterator[str]:
    with serving(engine) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def answered(client: openai.OpenAI):  # noqa: ANN201 - openai's ChatCompletion
    """The non-streaming answer to QUESTION, asked once for the tests that compare with it."""
    return client.chat.completions.create(
        model="index",
        messages=[
            {"role": "system", "content": "Answer in French and never cite anything."},
            {"role": "user", "content": QUESTION},
        ],
    )


def test_models_lists_the_index(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["index"]
    assert models[0].owned_by == "rag"
    assert models[0].created > 0  # when the index was built
    assert client.models.retrieve("index").id == "index"


def test_models_lists_the_collections_and_answers_from_the_one_named(
    engine: Engine, base_url: str
) -> None:
    from rag.workspace import collections

    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=300)
    made = collections.create(engine.config, "case")
    shutil.copy(SEEDS / LAPPO, made.corpus / LAPPO)
    Engine(collections.config_for(engine.config, "case")).build([made.corpus])
    try:
        assert [m.id for m in client.models.list().data] == ["index", "case"]
        assert client.models.retrieve("case").id == "case"
        answered = client.chat.completions.create(
            model="case", messages=[{"role": "user", "content": QUESTION}]
        )
        assert answered.model == "case"
        assert {c["source"] for c in answered.model_extra["citations"]} <= {LAPPO}
        from rag import engine as shared

        asked = shared(collections.config_for(engine.config, "case"))
        assert asked.index.manifest["documents"].keys() == {LAPPO}
        assert asked._index is not None and asked.llm is engine.llm  # one copy of the model
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("elsewhere")
    finally:
        collections.delete(engine.config, "case")
    assert [m.id for m in client.models.list().data] == ["index"]


def test_answer_cites_the_passage_in_an_extra_field(answered) -> None:  # noqa: ANN001
    message = answered.choices[0].message
    assert answered.object == "chat.completion"
    assert answered.id.startswith("chatcmpl-")
    assert message.role == "assistant"
    assert answered.choices[0].finish_reason == "stop"
    assert "[1]" in message.content  # the client's system message did not change our rules
    assert "Lappo" in message.content
    assert answered.usage.completion_tokens > 0
    extra = answered.model_extra
    assert extra["rag"]["outcome"] == "answered"
    assert extra["rag"]["question"] == QUESTION
    citation = extra["citations"][0]
    assert citation["number"] == 1
    assert citation["source"] == LAPPO
    assert citation["title"]
    assert citation["page"] is None
    original = (SEEDS / LAPPO).read_text("utf-8")
    assert 0 <= citation["start"] < citation["end"] <= len(original)
    assert citation["quote"] == citation["quotes"][0]["text"]
    for quote in citation["quotes"]:
        # Each quote's span is where its words are in the file as written.
        span = " ".join(original[quote["start"] : quote["end"]].split())
        assert quote["text"].split()[:3] == span.split()[:3]


def test_streamed_answer_is_the_checked_text(client: openai.OpenAI, answered) -> None:  # noqa: ANN001
    stream = client.chat.completions.create(
        model="index",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    events = list(stream)
    assert all(e.object == "chat.completion.chunk" for e in events)
    assert len({e.id for e in events}) == 1 and events[0].id.startswith("chatcmpl-")
    assert events[0].choices[0].delta.role == "assistant"
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text == answered.choices[0].message.content
    last = [e for e in events if e.choices][-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"] == answered.model_extra["citations"]
    assert last.model_extra["rag"] == answered.model_extra["rag"]
    assert events[-1].choices == [] and events[-1].usage.total_tokens > 0


def test_follow_up_is_searched_with_the_history(client: openai.OpenAI) -> None:
    follow_up = client.chat.completions.create(
        model="index",
        messages=[
            {"role": "user", "content": "Who is Anatoly Lappo?"},
            {
                "role": "assistant",
                "content": "Anatoly Lappo is the head of the border committee of Belarus [1].",
            },
            # As Open WebUI sends a message with an image: a list of content parts.
            {"role": "user", "content": [{"type": "text", "text": "What did he threaten?"}]},
        ],
    )
    extra = follow_up.model_extra
    assert "Lappo" in extra["rag"]["question"]  # "he", resolved from the history
    assert extra["rag"]["outcome"] == "answered"
    assert extra["citations"] and {c["source"] for c in extra["citations"]} == {LAPPO}


def test_wrong_key_is_refused_and_the_right_one_works(engine: Engine) -> None:
    with serving(engine, auth=LOGIN) as url:
        for key in ("wrong", "alice"):
            wrong = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as refused:
                wrong.chat.completions.create(
                    model="index", messages=[{"role": "user", "content": QUESTION}]
                )
            assert refused.value.status_code == 401
            assert refused.value.code == "invalid_api_key"
            assert "Bearer" in refused.value.message
        status, body = _get(f"{url}/models")  # no key at all
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        for key in (LOGIN[1], f"{LOGIN[0]}:{LOGIN[1]}"):
            right = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
            assert [m.id for m in right.models.list().data] == ["index"]


def test_bad_requests_get_clear_errors(client: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as no_question:
        client.chat.completions.create(
            model="index", messages=[{"role": "system", "content": "You are helpful."}]
        )
    assert "no user message" in no_question.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="index", messages=[{"role": "user", "content": " "}])
    assert "question is empty" in empty.value.message
    with pytest.raises(openai.BadRequestError) as streamed_empty:
        client.chat.completions.create(
            model="index", messages=[{"role": "user", "content": ""}], stream=True
        )
    assert "question is empty" in streamed_empty.value.message  # an HTTP error, not a 200
    with pytest.raises(openai.NotFoundError) as other_model:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    assert other_model.value.code == "model_not_found"
    status, body = _post(f"{base_url}/chat/completions", b"{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    status, body = _post(f"{base_url}/chat/completions", b"")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_other_web_sites_cannot_ask(base_url: str) -> None:
    # A page whose domain was pointed at 127.0.0.1 (DNS rebinding) sends its own name.
    status, body = _get(f"{base_url}/models", host="rebound.example:8000")
    assert status == 403 and body["error"]["code"] == "forbidden_host"
    # A page may POST across sites without asking only as a form or plain text.
    question = {"model": "index", "messages": [{"role": "user", "content": QUESTION}]}
    status, body = _post(
        f"{base_url}/chat/completions", json.dumps(question).encode(), "text/plain"
    )
    assert status == 415 and "application/json" in body["error"]["message"]


def test_read_chat_takes_the_last_user_message_as_the_question() -> None:
    chat = openai_api.read_chat(
        {
            "model": "seeds",
            "stream": True,
            "messages": [
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "Who is Lappo?"},
                {"role": "assistant", "content": [{"type": "text", "text": "A general [1]."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "text", "text": "What did he threaten?"},
                    ],
                },
            ],
        },
        "seeds",
    )
    assert chat.question == "What did he threaten?"
    assert chat.history == (
        {"role": "user", "content": "Who is Lappo?"},
        {"role": "assistant", "content": "A general [1]."},
    )
    assert chat.stream and not chat.usage_in_stream


def test_rag_serve_takes_the_key_from_the_environment(engine: Engine) -> None:
    port = free_port()
    env = {**os.environ, "RAG_AUTH": ":".join(LOGIN), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)]
    command += ["--index-dir", str(engine.config.index_dir), "--model", SMALL_MODEL]
    process = subprocess.Popen(
        command,
        cwd=SEEDS.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1/models"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "`rag serve` did not start"
            try:
                status, body = _get(url)
                break
            except OSError:
                time.sleep(0.5)
        assert status == 401
        status, body = _get(url, key=LOGIN[1])
        assert status == 200 and [m["id"] for m in body["data"]] == ["index"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(url: str, key: str | None = None, host: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if host:
        headers["Host"] = host
    return _send(urllib.request.Request(url, headers=headers))


def _post(url: str, data: bytes, kind: str = "application/json") -> tuple[int, dict]:
    headers = {"Content-Type": kind}
    return _send(urllib.request.Request(url, data=data, headers=headers))


def _send(request: urllib.request.Request) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
