"""The MCP server: search and answer as tools, the indexed documents as resources.

Built on the official `mcp` SDK (2.x), over stdio or streamable HTTP. Only `rag mcp` imports
this module: the SDK takes seconds to import.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.uri_template import UriTemplate
from mcp.types import CallToolResult, Resource, TextContent, ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict  # pydantic reads nested TypedDicts from here on 3.10/3.11

from .. import Answer, Chunk, Citation, Engine, Hit, RagError

if TYPE_CHECKING:
    from ..store import Index

# `{source}` (not `{+source}`): every character of a path is percent-encoded, so any file name
# (with `/`, `#` or `?`) comes back whole from the URI.
DOCUMENTS = UriTemplate.parse("rag://documents/{source}")
MAX_K = 50
_ROWS = 5000  # passages read per SQLite query (its limit on bound parameters)

INSTRUCTIONS = (
    "Search and question the user's own documents, indexed on this machine. `search` returns "
    "the passages that match a query, each with its document and character span; `answer` "
    "writes a short answer with a local model and cites the passages it used as [n]. Each "
    "document is also a resource (rag://documents/...), its text as indexed."
)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
log = logging.getLogger(__name__)


class Passage(TypedDict):
    """A passage of an indexed document that matches the query."""

    rank: int
    score: Annotated[float, Field(description="similarity to the query; higher is better")]
    source: Annotated[str, Field(description="the document's path in the indexed folder")]
    title: str
    start: Annotated[int, Field(description="where the passage starts in the document's text")]
    end: Annotated[int, Field(description="where it ends (characters, exclusive)")]
    page: int | None
    text: Annotated[str, Field(description="the passage as written in the document")]
    uri: Annotated[str, Field(description="the document as a resource")]


class Passages(TypedDict):
    """The passages that best match a query, best first."""

    passages: list[Passage]


class CitedPassage(TypedDict):
    """A passage the answer cites as [number]."""

    number: int
    source: str
    title: str
    start: Annotated[int, Field(description="where the passage starts in the document's text")]
    end: int
    page: int | None
    quote: Annotated[str, Field(description="its sentences that back the answer, as written")]
    uri: str


class Reply(TypedDict):
    """An answer written from the documents, with the passages it cites."""

    text: Annotated[str, Field(description="the answer, citing passages as [n]")]
    outcome: Annotated[
        str,
        Field(
            description="answered (from cited passages), refused (the documents don't say) or "
            "withheld (an answer was written but its passages did not back it)"
        ),
    ]
    reason: Annotated[str, Field(description="why it was refused or withheld")]
    citations: list[CitedPassage]


class _Server(MCPServer):
    """An MCPServer whose resources are the documents of the live index, listed at each
    request: a rebuild while the server runs adds or removes documents."""

    def __init__(self, engine: Engine, **settings: object) -> None:
        super().__init__(**settings)
        self.engine = engine

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        index = await anyio.to_thread.run_sync(lambda: self.engine.index)
        return listed + document_resources(index)


def build_server(engine: Engine) -> MCPServer:
    """An MCP server over an engine: tools `search` and `answer`, documents as resources."""

    @contextlib.asynccontextmanager
    async def warm(_: MCPServer) -> AsyncIterator[None]:
        # Load the models while the client starts up, so its first call does not wait for
        # them; a problem is reported again by the call that needs the model.
        threading.Thread(target=_warm, args=(engine,), name="rag-warm", daemon=True).start()
        yield

    server = _Server(
        engine,
        name="rag",
        version=_version(),
        instructions=INSTRUCTIONS,
        lifespan=warm,
        log_level="WARNING",  # to stderr; INFO would log every failed call and HTTP request
    )

    @server.tool(title="Search the documents", annotations=_READ_ONLY)
    def search(
        query: Annotated[str, Field(description="what to look for, in words")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="how many passages")] = 5,
    ) -> Annotated[CallToolResult, Passages]:
        """Find the passages of the user's documents that best match a query, best first, each
        with its document (source, title) and character span."""
        with _tool_errors():
            hits = engine.search(query, k)
        passages = [passage(rank, hit) for rank, hit in enumerate(hits, start=1)]
        return CallToolResult(
            content=[TextContent(type="text", text=passages_text(passages))],
            structured_content=Passages(passages=passages),
        )

    @server.tool(title="Answer from the documents", annotations=_READ_ONLY)
    def answer(
        question: Annotated[str, Field(description="a question about the documents")],
    ) -> Annotated[CallToolResult, Reply]:
        """Answer a question from the user's documents with a local model: a short answer
        citing the passages it used as [n], or a refusal when the documents don't say."""
        with _tool_errors():
            result = engine.answer(question)
        reply = make_reply(result)
        return CallToolResult(
            content=[TextContent(type="text", text=reply_text(reply))],
            structured_content=reply,
        )

    @server.resource(
        str(DOCUMENTS),
        name="document",
        title="An indexed document",
        description="The text of an indexed document, rebuilt from its passages; character "
        "offsets match the spans that search and answer give.",
        mime_type="text/plain",
    )
    def document(source: str) -> str:
        try:
            return document_text(engine.index, source)
        except RagError as exc:
            raise ResourceError(str(exc)) from exc

    return server


def run(
    engine: Engine,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8001,
) -> None:
    """Serve over stdio until the client closes it, or over streamable HTTP at
    http://HOST:PORT/mcp until the process is stopped."""
    server = build_server(engine)
    if transport == "stdio":
        server.run("stdio")  # the SDK points fd 1 at stderr meanwhile: stray prints can't corrupt
    elif transport == "http":
        server.run("streamable-http", host=host, port=port)
    else:
        raise ValueError(f"unknown transport {transport!r}: use stdio or http")


# -- what the tools return -----------------------------------------------------------------


def document_uri(source: str) -> str:
    return DOCUMENTS.expand({"source": source})


def passage(rank: int, hit: Hit) -> Passage:
    c = hit.chunk
    return Passage(
        rank=rank,
        score=round(float(hit.score), 4),
        source=c.source,
        title=c.title,
        start=c.start,
        end=c.end,
        page=c.page,
        text=c.original or c.text,
        uri=document_uri(c.source),
    )


def make_reply(result: Answer) -> Reply:
    return Reply(
        text=result.text,
        outcome=result.outcome,
        reason=result.reason,
        citations=[
            CitedPassage(
                number=c.number,
                source=c.source,
                title=c.title,
                start=c.start,
                end=c.end,
                page=c.page,
                quote=quote(c),
                uri=document_uri(c.source),
            )
            for c in result.citations
        ],
    )


def quote(citation: Citation) -> str:
    """The sentences of a cited passage that back the answer, in the document's own words
    (the whole passage when none was singled out)."""
    words = []
    for q in citation.quotes:
        a, b = q.start - citation.start, q.end - citation.start
        words.append(citation.text[a:b] if 0 <= a < b <= len(citation.text) else q.text)
    return " … ".join(words) or citation.text


def passages_text(passages: Sequence[Passage]) -> str:
    if not passages:
        return "No passage matches."
    return "\n\n".join(
        f"{p['rank']}. [{p['score']:.3f}] {p['title']} — {p['source']} "
        f"(chars {p['start']}-{p['end']}{_page(p['page'])})\n{p['text']}"
        for p in passages
    )


def reply_text(reply: Reply) -> str:
    lines = [reply["text"]]
    if reply["outcome"] != "answered":
        lines.append(f"({reply['outcome']}: {reply['reason']})")
    for c in reply["citations"]:
        lines.append(
            f"[{c['number']}] {c['title']} — {c['source']} "
            f"(chars {c['start']}-{c['end']}{_page(c['page'])})\n    “{c['quote']}”"
        )
    return "\n\n".join(lines)


def _page(page: int | None) -> str:
    return f", page {page}" if page else ""


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Our errors reach the client as a tool error with their message (they say what to do)."""
    try:
        yield
    except RagError as exc:
        raise ToolError(str(exc)) from exc


def _version() -> str:
    try:
        return importlib.metadata.version("rag")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _warm(engine: Engine) -> None:
    for part in ("embedder", "llm"):  # the embedder opens the index first
        try:
            getattr(engine, part)
        except RagError as exc:
            log.warning("%s", exc)
            return


# -- the documents as resources ------------------------------------------------------------


def document_resources(index: Index) -> list[Resource]:
    """One resource per document of the index, from its manifest."""
    documents = index.manifest.get("documents", {})
    return [
        Resource(
            uri=document_uri(source),
            name=info.get("title") or source,
            title=info.get("title") or source,
            description=f"{source} ({info.get('count', 0)} passages)",
            mime_type="text/plain",
        )
        for source, info in sorted(documents.items())
    ]


def document_text(index: Index, source: str) -> str:
    """A document's text, rebuilt from its passages in the index."""
    info = index.manifest.get("documents", {}).get(source)
    if info is None:
        raise ResourceNotFoundError(
            f"no document {source!r} in the index at {index.root}: list the resources to see "
            "what is indexed, or run `rag index` to add it"
        )
    first, count = int(info["first"]), int(info["count"])
    chunks = []
    for at in range(first, first + count, _ROWS):
        chunks += index.chunks(range(at, min(at + _ROWS, first + count)))
    return join_passages([c for c in chunks if c.source == source])


def join_passages(chunks: Sequence[Chunk]) -> str:
    """The text of a document from its passages as written (they overlap), each at its own
    character offsets: what lies between two passages (white space, or lines the cleaner
    dropped) becomes blank, so a span from `search` or `answer` slices the same words."""
    pieces: list[str] = []
    at = 0
    for c in sorted(chunks, key=lambda c: c.start):
        words = c.original or c.text
        if c.start > at:
            pieces.append(_blank(c.start - at))
            at = c.start
        if c.end > at:
            pieces.append(words[at - c.start :])
            at = c.end
    return "".join(pieces)


def _blank(size: int) -> str:
    # Line breaks around spaces: a paragraph break for the reader, the same length for offsets.
    return "\n" * size if size <= 2 else "\n" + " " * (size - 2) + "\n"
