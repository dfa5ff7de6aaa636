"""Generating answers with a GGUF model through llama.cpp on the CPU, streamed piece by piece."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import ModelMissing, PromptError, RagError

if TYPE_CHECKING:
    from jinja2 import Template

# Used when a GGUF file carries no chat template of its own.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Prompts are read in chunks of this many tokens (see _reusable).
CHUNK = 64


class Generator(Protocol):
    """What the engine needs of an answer model, wherever it runs: chat messages in, text
    pieces out, tokens counted, and the last generation's timings in `last_stats`
    (prompt_tokens, completion_tokens, ttft_s, total_s, tokens_per_s, finish_reason; and
    logprob_mean/logprob_min where the model reports them)."""

    name: str
    n_ctx: int
    last_stats: dict

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        messages: list[dict],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]: ...

    def close(self) -> None: ...


def load(
    model: str, models_dir: Path, n_ctx: int, threads: int | None, seed: int, timeout: float
) -> Generator:
    """The answer model a `model` setting names: "openai:URL[#MODEL]" is a server speaking the
    OpenAI chat API (its key from RAG_API_KEY or OPENAI_API_KEY); anything else a GGUF file
    run here by llama.cpp (a path, or a name `rag models` knows).

    A GGUF file is loaded once per process and setting, then shared: the engines of several
    collections answer with one copy of the model (it generates for one caller at a time)."""
    from . import remote  # light: httpx is imported when a server is used

    if model.startswith(remote.PREFIX):  # light, and its key is read from the environment now
        return remote.RemoteLLM.from_setting(model, n_ctx=n_ctx, seed=seed, timeout=timeout)
    from . import models

    key = (model, str(models_dir), n_ctx, threads, seed)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = LLM(models.resolve(model, models_dir), n_ctx, threads, seed)
        return _loaded[key]


_loaded: dict[tuple, Generator] = {}
_loaded_lock = threading.Lock()


@atexit.register
def _close_loaded() -> None:
    # Closed while llama.cpp's bindings still exist: left to the interpreter's last clean-up,
    # llama-cpp-python's destructor calls into an unloaded library and prints a traceback.
    with _loaded_lock:
        for model in _loaded.values():
            model.close()
        _loaded.clear()


def generate(model: Generator, messages: list[dict], **options: object) -> str:
    """The whole text a model writes for a chat (see `Generator.stream`)."""
    return "".join(model.stream(messages, **options))


class LLM:
    """A loaded GGUF model: renders chats, counts tokens, generates text one caller at a time."""

    def __init__(
        self, path: Path, n_ctx: int = 4096, threads: int | None = None, seed: int = 0
    ) -> None:
        import llama_cpp

        self.path = Path(path)
        self.name = self.path.name
        self.n_ctx = n_ctx
        self.seed = seed
        if not self.path.is_file():
            raise ModelMissing(f"answer model file {self.path} does not exist")
        started = time.perf_counter()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_batch=CHUNK,
                n_ubatch=CHUNK,
                n_threads=threads or os.cpu_count(),
                seed=seed,
                verbose=False,
                logits_all=False,
                # llama.cpp repacks most weights into its own memory for the CPU kernels; with
                # the file memory-mapped as well, both copies count: 1.86 GB resident for the
                # default model instead of 1.27 GB when it is read (see docs/BENCHMARKS.md).
                use_mmap=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            # llama-cpp-python says only "Failed to load model from file" for a truncated file.
            raise ModelMissing(
                f"llama.cpp cannot load answer model file {self.path} ({exc}): it is truncated, "
                "damaged or not a model llama.cpp knows: delete it and fetch it again"
            ) from exc
        self.load_s = time.perf_counter() - started
        self._stopping = llama_cpp.StoppingCriteriaList
        self._bos = self._llama.token_bos()
        self._template = _compile(self._llama.metadata.get("tokenizer.chat_template") or CHATML)
        self._bos_text = self._token_text(self._bos)
        self._eos_text = self._token_text(self._llama.token_eos())
        # A plain Lock, not an RLock: a streaming generator may be resumed and closed from
        # another thread than the one that started it (Gradio does this).
        self._lock = threading.Lock()
        # How the cached prompt was read: its fixed-prefix length and its token count.
        self._read: tuple[int, int] = (0, 0)
        # The last fixed prefix read and the model's state just after it, restored when another
        # prompt (a follow-up's rewrite) has pushed it out of the cache: 0.2 s instead of
        # reading it again (about 1.7 s for the default system prompt here).
        self._saved: tuple[list[int], object] | None = None
        self.last_stats: dict = {}

    def format_chat(self, messages: list[dict]) -> str:
        """The prompt for a chat (dicts with role and content), in the model's own template."""
        from jinja2 import TemplateError

        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self._bos_text,
                eos_token=self._eos_text,
            )
        except TemplateError as exc:
            raise PromptError(
                f"the chat template of {self.path.name} refused the chat: {exc}"
            ) from exc

    def tokenize(self, text: str) -> list[int]:
        """The tokens the model reads for `text` as a whole prompt.

        Special tokens written in the text (such as `<|im_start|>`) are read as such, and a
        BOS token is put first when the model's metadata asks for one, never twice: a prompt
        that already starts with BOS (from the chat template) gets no second one.
        """
        # llama.cpp adds BOS only when the model's metadata asks for it.
        tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        if tokens[:2] == [self._bos, self._bos]:
            del tokens[0]
        return tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as a piece of a prompt: never counts an added BOS.

        So the counts of pieces add up (up to merges at the seams), and for a whole prompt
        `len(tokenize(prompt))` is at most one more.
        """
        if not text:
            return 0
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(
        self,
        messages: list[dict],
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> Iterator[str]:
        """Text pieces for a chat, rendered with the model's template. A leading system
        message's state is computed once and reused by every later chat that starts with it
        (see `stream_prompt`)."""
        prefix = ""
        if messages and messages[0].get("role") == "system":
            prefix = self.chat_prefix(str(messages[0].get("content", "")))
        return self.stream_prompt(self.format_chat(messages), max_tokens, temperature, stop, prefix)

    def stream_prompt(
        self,
        prompt: str,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        prefix: str = "",
    ) -> Iterator[str]:
        """Text pieces as they are generated; temperature 0 is greedy and repeatable.

        `prefix` is the start of the prompt that every call shares (the system turn): its
        state is computed once and reused by every later prompt that starts with it.

        The prompt is checked against the context here, before anything runs. The model is
        held for the whole generation; it is let go when the pieces run out or the caller
        closes the iterator (dropping the last reference to it does that too).
        """
        tokens = self.tokenize(prompt)
        if len(tokens) + max_tokens > self.n_ctx:
            raise RagError(
                f"the prompt has {len(tokens)} tokens and the answer may take {max_tokens} more, "
                f"beyond the model's context of {self.n_ctx} tokens: use fewer or shorter "
                "passages, a shorter question, or a larger context (n_ctx)"
            )
        fixed = min(_common(self.tokenize(prefix), tokens), len(tokens) - 1) if prefix else 0
        return self._stream(tokens, fixed, max_tokens, temperature, list(stop))

    def generate_prompt(
        self,
        prompt: str,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        prefix: str = "",
    ) -> str:
        """The whole generated text for a rendered prompt (see `stream_prompt`)."""
        return "".join(self.stream_prompt(prompt, max_tokens, temperature, stop, prefix))

    def chat_prefix(self, system: str) -> str:
        """The start every prompt with this system message shares: the rendered system turn
        and the opening of the user's turn."""
        marker = "\x00user\x00"
        chat = [{"role": "system", "content": system}, {"role": "user", "content": marker}]
        text = self.format_chat(chat)
        return text[: text.index(marker)] if marker in text else ""

    def forget(self) -> None:
        """Drop every cached and saved state: the next prompt is read from its first token."""
        with self._lock:
            self._llama.reset()
            self._read = (0, 0)
            self._saved = None

    def close(self) -> None:
        """Free the model's memory now rather than at garbage collection."""
        with self._lock:
            self._saved = None
            self._llama.close()

    def _stream(
        self, tokens: list[int], fixed: int, max_tokens: int, temperature: float, stop: list[str]
    ) -> Iterator[str]:
        asked = time.perf_counter()
        with self._lock:
            started = time.perf_counter()
            llama = self._llama
            # llama-cpp-python keeps the KV cache of the longest prefix shared with the tokens
            # it holds (the last prompt and answer); capping what it holds caps that reuse.
            shared = llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
            cached = _reusable(shared, self._read, (fixed, len(tokens)))
            llama.n_tokens = min(llama.n_tokens, cached)
            self._read = (fixed, len(tokens))
            if cached < fixed:
                # The fixed prefix is read on its own, so its state ends exactly where the
                # next prompt's own text begins and can be reused whole. It is read on the
                # same schedule every time, so its saved state is the one a read would give.
                if self._saved is not None and self._saved[0] == tokens[:fixed]:
                    llama.load_state(self._saved[1])
                    cached = fixed
                else:
                    llama.eval(tokens[cached:fixed])
                    self._saved = (tokens[:fixed], llama.save_state())
            sampled: list[float] = []  # time of each token drawn, EOS included
            logprobs: list[float] = []  # log-probability of each token drawn (greedy: the top)

            def count(_ids: object, _logits: object) -> bool:
                sampled.append(time.perf_counter())
                if greedy:
                    # The logits llama-cpp-python passes here are only kept with logits_all;
                    # the context still holds those the token was just drawn from.
                    row = self._last_logits()
                    top = row.max()
                    logprobs.append(float(-np.log(np.exp(row - top).sum())))
                return False

            greedy = temperature <= 0
            chunks = llama.create_completion(
                tokens,
                max_tokens=max_tokens,
                temperature=0.0 if greedy else temperature,
                top_k=1 if greedy else 40,
                top_p=1.0 if greedy else 0.95,
                min_p=0.0 if greedy else 0.05,
                repeat_penalty=1.0,
                seed=self.seed,
                stop=stop,
                stream=True,
                stopping_criteria=self._stopping([count]),
            )
            finish = None
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    if choice["text"]:
                        yield choice["text"]
            finally:
                chunks.close()
                ended = time.perf_counter()
                first = sampled[0] if sampled else ended
                decode_s = sampled[-1] - first if len(sampled) > 1 else 0.0
                self.last_stats = {
                    "prompt_tokens": len(tokens),
                    "cached_tokens": cached,
                    "prefix_tokens": fixed,
                    "completion_tokens": len(sampled),
                    "wait_s": started - asked,
                    "ttft_s": first - started,
                    "total_s": ended - started,
                    "tokens_per_s": (len(sampled) - 1) / decode_s if decode_s > 0 else 0.0,
                    "finish_reason": finish or "stopped",
                }
                if logprobs:
                    self.last_stats["logprob_mean"] = float(np.mean(logprobs))
                    self.last_stats["logprob_min"] = float(np.min(logprobs))
                    self.last_stats["logprob_first"] = logprobs[0]

    def _last_logits(self) -> np.ndarray:
        """The logits of the last token the model read (a copy, as float64)."""
        llama = self._llama
        row = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))
        return row.astype(np.float64)

    def _token_text(self, token: int) -> str:
        if token == -1:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")


def _reusable(shared: int, before: tuple[int, int], now: tuple[int, int]) -> int:
    """How many cached prompt tokens to reuse so that the answer is the same as with none.

    llama.cpp's CPU kernels round a token's numbers differently depending on the batch it is
    read in (repacked weights go in groups of four rows, small batches take other paths), and
    a greedy answer can flip on the last bit. So every prompt is read on a fixed schedule:
    its fixed prefix of `f` tokens in CHUNK-token batches from 0, then the rest in CHUNK-token
    batches from `f`. A cached token is reused only up to a batch start of the new prompt's
    schedule that the previous prompt's schedule shared and had read as whole batches: each
    token is then computed in exactly the batch a cold read would put it in.
    (`before` and `now` are (fixed prefix, prompt tokens) of the previous and this prompt.)
    """
    (f0, n0), (f1, n1) = before, now
    limit = min(shared, n1 - 1)
    if f0 != f1:  # another prefix: only the plain grid below both prefixes is shared
        limit = min(limit, f0, f1, n0)
        return max(0, limit - limit % CHUNK)
    # A start of the new schedule up to the previous prompt's end: every batch before it was
    # read then exactly as now (the previous prompt's last batch only if it ends there).
    return max((a for a in _starts(f1, n1) if a <= min(limit, n0)), default=0)


def _starts(fixed: int, total: int) -> list[int]:
    """Where the batches of a prompt's schedule start (and the prompt's end)."""
    grid = list(range(0, fixed, CHUNK))
    return [*grid, *range(fixed, total, CHUNK), total]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _compile(source: str) -> Template:
    # The same environment as transformers' apply_chat_template, so GGUF templates written
    # for it render the same way.
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: object, indent: int | None = None, **_: object) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)
