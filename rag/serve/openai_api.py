"""The OpenAI-compatible HTTP API: `/v1/chat/completions` and `/v1/models` over one engine.

Any OpenAI client (the `openai` package, Open WebUI, curl) asks the documents as it would ask
a model. What it gets:

- The conversation is the request's `messages`: the last `user` message is the question, the
  `user` and `assistant` messages before it are the history a follow-up leans on. Messages
  with other roles are ignored, `system` ones included: the answer follows our own prompt's
  rules (answer only from the passages, cite them), not the client's.
- The reply is a standard `chat.completion` whose text is the checked answer with `[n]`
  markers, plus two extra top-level fields: `citations` (for each [n]: the source file,
  title, character span, page and the quoted sentences) and `rag` (the outcome, why an answer
  was refused or withheld, and the question that was searched).
- Streaming (`"stream": true`) sends Server-Sent Events of `chat.completion.chunk` objects.
  The model's draft is *not* streamed: it is checked against its passages once written, and
  the checked answer can differ (withheld, refused, citations renumbered). Clients only ever
  append deltas, so a draft once sent could not be taken back. The stream sends the role at
  once, then, when the check is done, the checked text in pieces, then a last chunk with
  `finish_reason` "stop" and the `citations` and `rag` fields, then `data: [DONE]`. Joined,
  the deltas are exactly the non-streaming answer's text.
- `/v1/models` lists the index served, named after its folder (e.g. `seeds`), then every other
  collection by its name (`rag collections`): a request naming a collection is answered from
  its documents. A request naming anything else gets 404. Sampling options (`temperature`, `max_tokens`, …) are
  ignored: the engine's settings decide.
- With a login (`RAG_AUTH="user:password"`, as for the chat page) every request needs
  `Authorization: Bearer <key>`, the key being the password or the whole "user:password".
- Web pages in the browser are kept out: a server on 127.0.0.1 answers only requests
  addressed to a loopback name (no DNS rebinding), and questions must come as JSON (which a
  page on another site cannot send without CORS, and none is allowed).

Errors come as OpenAI does them, `{"error": {"message", "type", "param", "code"}}`: 400 for
a bad request or question, 401 without the key, 403 for another host name, 404 for another
model, 413/415 for a body too large or not JSON, 429 when too many questions wait, 503 when
the index or a model is missing (the message says what to run).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at
# run time, and `Request` is imported inside `build_app` (lazily, as every heavy import).
import hmac
import ipaddress
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import Answer, BadQuestion, Citation, Engine, RagError
from .. import engine as shared_engine
from ..workspace import collections

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

MAX_BODY_BYTES = 1_000_000
# Questions answered or waiting for the model at once; the model answers one at a time, so
# beyond this a client is told to retry later instead of holding a worker thread.
MAX_WAITING = 8
QUOTE_CHARS = 300
_PIECE = re.compile(r"\S+\s*|\s+")


class ApiError(Exception):
    """A request the API turns down, with the HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        kind: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind
        self.param = param

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    @classmethod
    def of(cls, exc: RagError) -> "ApiError":
        """A bad question is the client's to fix (400); anything else (no index, a missing
        model) is the server's (503), with the message saying what to run."""
        if isinstance(exc, BadQuestion):
            return cls(400, str(exc), "bad_question")
        return cls(503, str(exc), "unavailable", kind="server_error")


# -- reading a request ----------------------------------------------------------------------


@dataclass(frozen=True)
class Chat:
    """What a chat-completion request asks: the question, the turns before it, how to reply."""

    question: str
    history: tuple[dict, ...] = ()
    stream: bool = False
    usage_in_stream: bool = False  # stream_options.include_usage: a last chunk with usage
    model: str = ""  # the model (index or collection) asked for; "" for the served index


def read_chat(body: Any, model: str, others: Sequence[str] = ()) -> Chat:
    """The question, history and options of a chat-completion body; raises ApiError. `model`
    is the served index's name, `others` the other collections a request may name."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with `model` and `messages`")
    asked = body.get("model")
    if asked not in (None, "", model, *others):
        raise ApiError(
            404,
            f"the model {asked!r} does not exist: this server answers from the index "
            f"{model!r} or a collection (see /v1/models)",
            "model_not_found",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400, "`messages` must be a non-empty list of {role, content} objects", param="messages"
        )
    turns: list[dict] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a `role`", param="messages")
        if message["role"] in ("user", "assistant"):
            turns.append({"role": message["role"], "content": _text(message.get("content"), i)})
    asked_at = [i for i, t in enumerate(turns) if t["role"] == "user"]
    if not asked_at:
        raise ApiError(
            400,
            'the request has no user message: put the question in a message with role "user"',
            param="messages",
        )
    if body.get("n") not in (None, 1):
        raise ApiError(400, "only one answer is given per question: leave `n` out", param="n")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise ApiError(400, "`stream` must be true or false", param="stream")
    options = body.get("stream_options")
    last = asked_at[-1]
    return Chat(
        question=turns[last]["content"],
        history=tuple(t for t in turns[:last] if t["content"]),
        stream=bool(stream),
        usage_in_stream=isinstance(options, dict) and bool(options.get("include_usage")),
        model=asked if asked in others else "",
    )


def _text(content: Any, i: int) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text") or ""))
        return "\n".join(t for t in texts if t)
    raise ApiError(
        400, f"messages[{i}].content must be a string or a list of content parts", param="messages"
    )


def loopback_host(header: str | None) -> bool:
    """Whether a Host header names this machine by a loopback name. A web page that points its
    own domain at 127.0.0.1 (DNS rebinding) sends that domain, and is turned away."""
    host = (header or "").strip().lower()
    host = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorized(header: str | None, keys: tuple[bytes, ...]) -> bool:
    """Whether an Authorization header carries one of the keys (compared in constant time)."""
    scheme, _, key = (header or "").strip().partition(" ")
    given = key.strip().encode("utf-8")
    matches = [hmac.compare_digest(given, k) for k in keys]  # all compared: no early exit
    return scheme.lower() == "bearer" and bool(given) and any(matches)


# -- writing a reply ------------------------------------------------------------------------


def citation_dict(citation: Citation) -> dict:
    """A citation for the `citations` field: where the passage is and what of it backs the
    answer (`quote`: its first backing sentence, or the passage's start)."""
    quotes = [q.to_dict() for q in citation.quotes]
    return {
        "number": citation.number,
        "source": citation.source,
        "title": citation.title,
        "start": citation.start,
        "end": citation.end,
        "page": citation.page,
        "score": citation.score,
        "quote": citation.quotes[0].text if citation.quotes else _cut(citation.text),
        "quotes": quotes,
    }


def _cut(text: str, width: int = QUOTE_CHARS) -> str:
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[:width].rsplit(" ", 1)[0] + "…"


def extras(answer: Answer) -> dict:
    """The fields added to OpenAI's reply: the citations and how the answer was reached."""
    return {
        "citations": [citation_dict(c) for c in answer.citations],
        "rag": {
            "outcome": answer.outcome,
            "reason": answer.reason,
            "question": answer.question,
            "supported": answer.supported,
        },
    }


def usage(answer: Answer) -> dict:
    prompt = int(answer.timings.get("prompt_tokens", 0))
    completion = int(answer.timings.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(answer: Answer, model: str) -> dict:
    """The `chat.completion` reply to a non-streaming request."""
    return {
        "id": _new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(answer),
        **extras(answer),
    }


def chunk_base(model: str) -> dict:
    """What every chunk of one streamed reply shares: its id, time and model."""
    return {
        "id": _new_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }


def role_chunk(base: dict) -> dict:
    return {**base, "choices": [_choice({"role": "assistant", "content": ""})]}


def chunks(answer: Answer, base: dict, usage_chunk: bool = False) -> Iterator[dict]:
    """The chunks after the role one: the checked text in pieces (a word each), a last chunk
    with the citations, and the usage when asked for."""
    for piece in _PIECE.findall(answer.text):
        yield {**base, "choices": [_choice({"content": piece})]}
    yield {**base, "choices": [_choice({}, "stop")], **extras(answer)}
    if usage_chunk:
        yield {**base, "choices": [], "usage": usage(answer)}


def _choice(delta: dict, finish: str | None = None) -> dict:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def model_name(engine: Engine) -> str:
    """The model id the API lists: the index folder's name."""
    return Path(engine.config.index_dir).name or "rag"


def _model_card(engine: Engine, name: str | None = None) -> dict:
    try:
        stamp = str(engine.index.manifest.get("created"))
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (RagError, ValueError):
        created = 0
    named = name or model_name(engine)
    return {"id": named, "object": "model", "created": int(created), "owned_by": "rag"}


# -- the app --------------------------------------------------------------------------------


def build_app(
    engine: Engine, auth: tuple[str, str] | None = None, loopback: bool = False
) -> "FastAPI":
    """The API over `engine`. `auth` is the login (user, password), e.g. `rag.web.login()`:
    with it, a request's bearer key must be the password or "user:password". With `loopback`
    (a server on 127.0.0.1) only requests addressed to a loopback name are answered."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    model = model_name(engine)
    from .. import web

    keys = tuple(
        key
        for user, password in web.passwords(auth)
        for key in (password.encode("utf-8"), f"{user}:{password}".encode())
    )
    waiting = threading.BoundedSemaphore(MAX_WAITING)

    class EventStream(StreamingResponse):
        """Server-Sent Events that run `done` however the response ends (finished, client
        gone, or never started), so the model and the waiting slot are always let go."""

        def __init__(self, content: AsyncIterator[str], done: Callable[[], None]) -> None:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            super().__init__(content, media_type="text/event-stream", headers=headers)
            self.done = done

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.done()

    async def check_request(request: Request) -> None:
        if loopback and not loopback_host(request.headers.get("host")):
            raise ApiError(
                403,
                "this server answers only requests addressed to 127.0.0.1 or localhost: start "
                'it with --host and RAG_AUTH="user:password" to reach it by another name',
                "forbidden_host",
            )
        if keys and not authorized(request.headers.get("authorization"), keys):
            raise ApiError(
                401,
                "a valid API key is needed: send `Authorization: Bearer <key>`, the key being "
                'the password of RAG_AUTH="user:password" (or the whole user:password)',
                "invalid_api_key",
            )

    app = FastAPI(
        title="rag",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(check_request)],
    )

    @app.exception_handler(ApiError)
    async def turned_down(request: Request, exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RagError)
    async def failed(request: Request, exc: RagError) -> Response:
        return await turned_down(request, ApiError.of(exc))

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, exc: HTTPException) -> Response:
        error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
        return await turned_down(request, error)

    def others() -> dict[str, object]:
        """The other collections, by name."""
        found = {}
        for c in collections.listed(engine.config):
            if c.name not in (engine.config.collection, model):
                found[c.name] = c
        return found

    def engine_named(name: str) -> Engine:
        if name in ("", model):
            return engine
        return shared_engine(collections.config_for(engine.config, name))

    @app.get("/v1/models")
    def list_models() -> dict:
        cards = [_model_card(engine)]
        cards += [_model_card(engine_named(name), name) for name in others()]
        return {"object": "list", "data": cards}

    @app.get("/v1/models/{name}")
    def get_model(name: str) -> dict:
        if name != model and name not in others():
            raise ApiError(404, f"the model {name!r} does not exist", "model_not_found")
        return _model_card(engine_named(name), name)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # Also keeps other web sites out: a page may send a cross-site POST only as a
            # form or plain text, unless the server allows it (CORS, not set up here).
            raise ApiError(415, "send the request as JSON: `Content-Type: application/json`")
        chat = read_chat(await _read_json(request), model, list(others()))
        chosen = engine_named(chat.model)
        if not waiting.acquire(blocking=False):
            raise ApiError(
                429,
                f"{MAX_WAITING} questions are already being answered or waiting: retry later",
                "busy",
                kind="rate_limit_error",
            )
        if not chat.stream:
            try:
                answer = await run_in_threadpool(chosen.answer, chat.question, list(chat.history))
            finally:
                waiting.release()
            return JSONResponse(completion(answer, chat.model or model))

        items = chosen.stream(chat.question, list(chat.history))
        closed = threading.Event()

        def done() -> None:
            if not closed.is_set():
                closed.set()
                items.close()  # lets go of the model if the client left mid-answer
                waiting.release()

        try:
            # Up to the first draft piece before replying: a bad question, a missing index or
            # model is still an HTTP error rather than an error inside a 200 stream.
            first = await run_in_threadpool(next, items, None)
        except BaseException:
            done()
            raise
        return EventStream(_events(items, first, chat, chat.model or model), done)

    async def _events(
        items: Iterator[str | Answer], first: str | Answer | None, chat: Chat, model: str
    ) -> AsyncIterator[str]:
        base = chunk_base(model)
        yield _event(role_chunk(base))
        item = first
        try:
            while item is not None and not isinstance(item, Answer):
                item = await run_in_threadpool(next, items, None)
        except RagError as exc:
            yield _event(ApiError.of(exc).body())  # the openai client raises it as APIError
            return
        if item is None:
            yield _event(
                ApiError(500, "the engine ended without an answer", kind="server_error").body()
            )
            return
        for data in chunks(item, base, chat.usage_in_stream):
            yield _event(data)
        yield "data: [DONE]\n\n"

    return app


async def _read_json(request: Any) -> Any:
    """The request body as JSON, at most MAX_BODY_BYTES; raises ApiError."""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(
                413, f"the request is over {MAX_BODY_BYTES:,} bytes: send a shorter conversation"
            )
    if not body.strip():
        raise ApiError(400, "the body is empty: send a JSON object with `model` and `messages`")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


def server(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8000,
    auth: tuple[str, str] | None = None,
    log_level: str = "info",
) -> "uvicorn.Server":
    """The uvicorn server of the API (on 127.0.0.1 unless told otherwise), not yet started:
    `.run()` serves until interrupted; setting `.should_exit` stops it."""
    import uvicorn

    from .. import web

    app = build_app(engine, auth, loopback=not web.open_to_network(host))
    config = uvicorn.Config(app, host, port, log_level=log_level, server_header=False)
    return uvicorn.Server(config)


def run(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8000,
    auth: tuple[str, str] | None = None,
) -> None:
    """Serve the API until interrupted."""
    server(engine, host, port, auth).run()
