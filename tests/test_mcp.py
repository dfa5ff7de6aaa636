"""`rag mcp` end to end: the MCP SDK's own client starts the server over stdio (and over
streamable HTTP), lists and calls its tools and reads the indexed documents as resources."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from conftest import ROOT, SEEDS, SMALL_MODEL, free_port, stop
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from rag import Config, Engine

LAPPO = "004_54fdbde5d22b5a7d.txt"
LAPPO_SAID = (
    "“[If] there will be at least one bullet in our border guards, the answer will be immediate "
    "and cruel,” Lappo said."
)
TIMEOUT = 300  # seconds for any one request: the first loads the models on 2 busy cores


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh index of a copy of the seeds."""
    root = tmp_path_factory.mktemp("mcp")
    shutil.copytree(SEEDS, root / "corpus")
    config = Config.load(corpus=root / "corpus", index_dir=root / "index")
    Engine(config).build([config.corpus])
    return root / "index"


def server_command(index_dir: Path, *flags: str) -> list[str]:
    args = ["-m", "rag.cli", "mcp", "--index-dir", str(index_dir), "--model", SMALL_MODEL]
    return [sys.executable, *args, *flags]


def server_env() -> dict[str, str]:
    offline = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # A short answer budget keeps the tiny model (which rambles) quick; one llama.cpp thread,
    # as its threads spin-wait for each other and crawl on 2 busy cores.
    return {**os.environ, **offline, "RAG_MAX_TOKENS": "64", "RAG_THREADS": "1"}


class Session:
    """A live MCP ClientSession, called from these (synchronous) tests through an event loop
    running in a thread: `session.call_tool(...)` returns what the SDK's coroutine returns."""

    def __init__(
        self,
        portal: anyio.from_thread.BlockingPortal,
        session: ClientSession,
        unreadable: list[Exception],
    ) -> None:
        self._portal = portal
        self._session = session
        self.unreadable = unreadable  # what the server wrote to stdout that was no message

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._session, name)
        return lambda *args, **kwargs: self._portal.call(functools.partial(method, *args, **kwargs))


@pytest.fixture(scope="module")
def mcp(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """A client session with `rag mcp` started over stdio, as an MCP client app starts it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=server_command(index_dir)[1:],
        env=server_env(),
        cwd=str(ROOT),
    )
    log = tmp_path_factory.mktemp("mcp-log") / "server.log"
    unreadable: list[Exception] = []

    async def on_message(message: object) -> None:
        if isinstance(message, Exception):
            unreadable.append(message)

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        with open(log, "w", encoding="utf-8") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(
                    read, write, read_timeout_seconds=TIMEOUT, message_handler=on_message
                ) as client,
            ):
                await client.initialize()
                yield client

    with anyio.from_thread.start_blocking_portal() as portal:
        try:
            client = portal.wrap_async_context_manager(session())
            with client as live:
                yield Session(portal, live, unreadable)
        finally:
            print(f"server log:\n{log.read_text(encoding='utf-8')[-4000:]}")


def test_lists_search_and_answer_with_their_arguments(mcp: Session) -> None:
    tools = {tool.name: tool for tool in mcp.list_tools().tools}
    assert {"search", "answer"} <= set(tools)
    search = tools["search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string"
    assert search["properties"]["k"]["default"] == 5
    answer = tools["answer"].input_schema
    assert answer["required"] == ["question"]
    assert answer["properties"]["question"]["type"] == "string"
    # The structured results are described too, and the tools say they only read.
    assert "passages" in tools["search"].output_schema["properties"]
    assert "citations" in tools["answer"].output_schema["properties"]
    assert tools["answer"].annotations.read_only_hint


def test_search_finds_the_lappo_passage_with_its_source_and_span(mcp: Session) -> None:
    result = mcp.call_tool("search", {"query": "Lappo border guards", "k": 3})
    assert not result.is_error
    passages = result.structured_content["passages"]
    assert [p["rank"] for p in passages] == [1, 2, 3]
    top = passages[0]
    assert top["source"] == LAPPO and "Lappo" in top["text"]
    original = (SEEDS / LAPPO).read_text(encoding="utf-8")
    assert original[top["start"] : top["end"]] == top["text"]
    assert top["uri"] == f"rag://documents/{LAPPO}"
    # The same passages as text, for clients that show only that.
    assert f"— {LAPPO} (chars {top['start']}-{top['end']})" in result.content[0].text


def test_answer_cites_a_passage_of_a_seed_file(mcp: Session) -> None:
    result = mcp.call_tool("answer", {"question": "What did Lappo threaten?"})
    assert not result.is_error
    reply = result.structured_content
    assert reply["outcome"] == "answered", reply
    assert reply["citations"], reply
    for c in reply["citations"]:
        original = (SEEDS / c["source"]).read_text(encoding="utf-8")
        passage = original[c["start"] : c["end"]]
        assert c["quote"] and all(q in passage for q in c["quote"].split(" … "))
        assert f"[{c['number']}]" in reply["text"]
    assert LAPPO in {c["source"] for c in reply["citations"]}
    text = result.content[0].text
    assert text.startswith(reply["text"]) and reply["citations"][0]["quote"] in text


def test_an_empty_question_is_a_tool_error_with_our_message(mcp: Session) -> None:
    result = mcp.call_tool("answer", {"question": "   "})
    assert result.is_error
    assert "the question is empty: type a question about your documents" in result.content[0].text


def test_lists_the_indexed_documents_as_resources_and_reads_one(mcp: Session) -> None:
    resources = mcp.list_resources().resources
    seeds = sorted(p.name for p in SEEDS.iterdir())
    assert sorted(r.uri.removeprefix("rag://documents/") for r in resources) == seeds
    assert all(r.name and r.mime_type == "text/plain" for r in resources)
    lappo = next(r for r in resources if r.uri.endswith(LAPPO))
    assert lappo.name == "Top Putin Ally Threatens ‘Cruel’ Attacks on New Country"

    (content,) = mcp.read_resource(lappo.uri).contents
    original = (SEEDS / LAPPO).read_text(encoding="utf-8")
    # Rebuilt from the passages, at the same offsets as the file: spans slice the same words.
    assert content.text.index(LAPPO_SAID) == original.index(LAPPO_SAID)


def test_reading_a_document_that_is_not_indexed_says_so(mcp: Session) -> None:
    with pytest.raises(MCPError, match="no document 'missing.txt' in the index"):
        mcp.read_resource("rag://documents/missing.txt")


def test_the_server_writes_nothing_but_protocol_to_stdout(mcp: Session) -> None:
    # Runs after the calls above (tests run in file order), which loaded both models.
    assert mcp.unreadable == []


def test_streamable_http_serves_the_same_tools(index_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w", encoding="utf-8") as out:
        server = subprocess.Popen(
            server_command(index_dir, "--transport", "http", "--port", str(port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(),
            cwd=ROOT,
        )
    try:
        wait_for_port(port, server, log)

        async def over_http() -> tuple:
            with anyio.fail_after(TIMEOUT):
                async with (
                    streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                    ClientSession(read, write) as client,
                ):
                    await client.initialize()
                    tools = await client.list_tools()
                    found = await client.call_tool("search", {"query": "Lappo border guards"})
                    return tools, found

        tools, found = anyio.run(over_http)
        assert {"search", "answer"} <= {t.name for t in tools.tools}
        assert not found.is_error
        assert len(found.structured_content["passages"]) == 5
        assert found.structured_content["passages"][0]["source"] == LAPPO
    finally:
        stop(server)


def wait_for_port(port: int, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`rag mcp --transport http` exited:\n{log.read_text(encoding='utf-8')}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(
        f"`rag mcp --transport http` did not listen in {timeout} s:\n{log.read_text('utf-8')}"
    )
