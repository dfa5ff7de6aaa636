"""Generating answers with a model behind an OpenAI-compatible server (llama.cpp's server,
vLLM, Ollama, LM Studio, a hosted endpoint): the same chat messages, streamed over HTTP."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence

from .errors import ModelUnavailable, RagError

PREFIX = "openai:"  # of the model setting that names such a server
# The only key sources: a flag would leave it in shell history and process lists.
KEY_VARIABLES = ("RAG_API_KEY", "OPENAI_API_KEY")
# Without a tokenizer on the server, a token is taken to be this many UTF-8 bytes: English runs
# about 4 per token, so budgets computed with 3 stay inside the context.
BYTES_PER_TOKEN = 3
# Fields beyond the OpenAI API that keep greedy answers equal to the in-process ones (llama.cpp
# servers default to a repeat penalty of 1.1); dropped for a server that refuses them.
EXTRA = {"repeat_penalty": 1.0}
# Token counts kept (texts sent again and again: the system turn, the evidence sentences).
COUNT_CACHE = 4096


class RemoteLLM:
    """An answer model behind `/v1/chat/completions`; one request at a time, like `LLM`."""

    def __init__(
        self,
        base_url: str,
        model: str = "",
        api_key: str | None = None,
        n_ctx: int = 4096,
        seed: int = 0,
        timeout: float = 120.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{PREFIX}{self.base_url}" + (f"#{model}" if model else "")
        self.n_ctx = n_ctx
        self.seed = seed
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )
        self._lock = threading.Lock()
        self._extra = dict(EXTRA)
        self._counter: tuple[str, int] | None = None  # (tokenize URL, tokens of "") once probed
        self._probed = False
        self._probe_lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self.last_stats: dict = {}

    @classmethod
    def from_setting(cls, setting: str, **options: object) -> RemoteLLM:
        """From "openai:URL[#MODEL]", e.g. "openai:http://127.0.0.1:8080/v1#qwen"."""
        url, _, model = setting.removeprefix(PREFIX).partition("#")
        if not url.startswith(("http://", "https://")):
            raise RagError(
                f"model setting {setting!r}: write openai:URL[#MODEL] with the server's base "
                "URL, e.g. openai:http://127.0.0.1:8080/v1#my-model"
            )
        key = next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
        return cls(url, model, key, **options)  # type: ignore[arg-type]

    # -- the Generator interface ---------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the server's model counts them where the server can tokenize
        (llama-cpp-python, llama.cpp, vLLM); else a conservative estimate."""
        import httpx

        if not text:
            return 0
        counter = self._token_counter()
        if counter is None:
            return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
        url, empty = counter
        try:
            return max(0, self._tokenize(url, text) - empty)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"cannot count tokens at {url}: {exc}") from None

    def stream(
        self,
        messages: list[dict],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Text pieces as the server streams them. Errors are raised before the first piece
        (the request is sent when the iterator is first advanced)."""
        asked = sum(self.count_tokens(str(m.get("content", ""))) + 8 for m in messages)
        if asked + max_tokens > self.n_ctx:
            raise RagError(
                f"the prompt has about {asked} tokens and the answer may take {max_tokens} "
                f"more, beyond the model's context of {self.n_ctx} tokens (n_ctx: set it to "
                "the server's context): use fewer or shorter passages or a shorter question"
            )
        body: dict = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "seed": self.seed,
        }
        if self.model:
            body["model"] = self.model
        if stop:
            body["stop"] = list(stop)[:4]  # the OpenAI API takes at most four
        return self._stream(body)

    def close(self) -> None:
        self._http.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _stream(self, body: dict) -> Iterator[str]:
        import httpx

        asked = time.perf_counter()
        with self._lock:
            started = time.perf_counter()
            first = None
            pieces = 0
            finish = None
            usage: dict = {}
            try:
                with self._request(body) as response:
                    for data in _events(response.iter_lines()):
                        if data.get("usage"):
                            usage = data["usage"]
                        for choice in data.get("choices") or []:
                            finish = choice.get("finish_reason") or finish
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                first = first or time.perf_counter()
                                pieces += 1
                                yield text
            except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise ModelUnavailable(
                    f"the answer model server at {self.base_url} cannot be reached (no "
                    f"connection: {type(exc).__name__}): start it, or check the URL of --model "
                    "openai:URL"
                ) from None
            except httpx.TimeoutException:
                raise ModelUnavailable(
                    f"the answer model server at {self.base_url} did not answer within "
                    f"{self.timeout:g} s: raise RAG_TIMEOUT or use a faster model"
                ) from None
            except httpx.TransportError as exc:
                raise ModelUnavailable(
                    f"the answer model server at {self.base_url} cannot be reached ({exc}): "
                    "start it, or check the URL of --model openai:URL"
                ) from None
            finally:
                ended = time.perf_counter()
                first = first or ended
                decode_s = ended - first
                completion = usage.get("completion_tokens", pieces)
                self.last_stats = {
                    "prompt_tokens": usage.get("prompt_tokens", 0),
                    "completion_tokens": completion,
                    "wait_s": started - asked,
                    "ttft_s": first - started,
                    "total_s": ended - started,
                    "tokens_per_s": (completion - 1) / decode_s if decode_s > 0 else 0.0,
                    "finish_reason": finish or "stopped",
                }

    def _request(self, body: dict):  # noqa: ANN202 - a streaming httpx response (context)
        """The streaming response for a chat request, its status checked; fields beyond the
        OpenAI API are dropped once if the server refuses them."""
        import contextlib

        url = f"{self.base_url}/chat/completions"

        @contextlib.contextmanager
        def opened():  # noqa: ANN202
            for attempt in range(2):
                with self._http.stream("POST", url, json={**body, **self._extra}) as response:
                    kind = response.headers.get("content-type", "")
                    if response.status_code < 400 and "text/event-stream" not in kind:
                        raise ModelUnavailable(
                            f"the answer model server at {self.base_url} answered without "
                            f"streaming ({kind or 'no content type'}): it does not speak the "
                            "OpenAI chat API's streaming"
                        )
                    if response.status_code < 400:
                        yield response
                        return
                    message = _error_message(response)
                    refused = response.status_code in (400, 422) and any(
                        name in message for name in self._extra
                    )
                    if attempt == 0 and refused:
                        self._extra = {}
                        continue
                    raise ModelUnavailable(
                        f"the answer model server at {self.base_url} answered "
                        f"{response.status_code}: {message}"
                    )

        return opened()

    def _token_counter(self) -> tuple[str, int] | None:
        """The server's tokenize endpoint and its count for "" (a BOS it may add), found once
        (a server that cannot be reached is asked again next time)."""
        import httpx

        with self._probe_lock:
            if self._probed:
                return self._counter
            root = self.base_url.removesuffix("/v1")
            for url in (f"{root}/extras/tokenize", f"{root}/tokenize"):
                try:
                    self._counter = (url, self._tokenize(url, ""))
                    break
                except httpx.TransportError:
                    return None  # not probed: the server may come up later
                except (ModelUnavailable, ValueError, KeyError, TypeError):
                    continue
            self._probed = True
            return self._counter

    def _tokenize(self, url: str, text: str) -> int:
        key = (url, text)
        if key in self._counts:
            return self._counts[key]
        # llama-cpp-python reads "input", llama.cpp "content", vLLM "prompt".
        body = {"input": text, "content": text, "prompt": text, "add_special": False}
        if self.model:
            body["model"] = self.model
        response = self._http.post(url, json=body)
        if response.status_code >= 400:
            raise ModelUnavailable(f"cannot tokenize at {url}: {response.status_code}")
        data = response.json()
        count = int(data["count"]) if "count" in data else len(data["tokens"])
        if len(self._counts) >= COUNT_CACHE:
            self._counts.clear()
        self._counts[key] = count
        return count


def _events(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON payloads of a server-sent event stream, up to `data: [DONE]`; a stream that
    ends with neither an event nor [DONE] was cut off."""
    seen = False
    for line in _data_lines(lines):
        seen = True
        if line == "[DONE]":
            return
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            raise ModelUnavailable(
                f"the answer model server sent a broken event: {line[:200]}"
            ) from None
        if not isinstance(data, dict):
            raise ModelUnavailable(f"the answer model server sent a broken event: {line[:200]}")
        if "error" in data:
            raise ModelUnavailable(f"the answer model server failed: {_describe(data['error'])}")
        yield data
    if not seen:
        raise ModelUnavailable("the answer model server closed the stream without an answer")


def _data_lines(lines: Iterator[str]) -> Iterator[str]:
    """The payloads of an event stream's `data:` lines."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def _error_message(response) -> str:  # noqa: ANN001 - an httpx response
    response.read()
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict) and "error" in data:
        return _describe(data["error"])
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]


def _describe(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300]
