"""Generating with the real SmolLM2 through llama.cpp: repeatable, streamed, bounded, shared."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rag import ModelMissing, RagError
from rag.generate import CHUNK, LLM, _reusable
from rag.models import PRESETS, resolve

SYSTEM = "You are a helpful assistant. Answer in one short sentence."
LONG_SYSTEM = "Answer from these notes only.\n" + "\n".join(
    f"Note {i}: the red fox number {i} sleeps under oak tree {i} in the north garden."
    for i in range(24)
)


@pytest.fixture(scope="session")
def smollm2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve("smollm2-135m", tmp_path_factory.mktemp("models"))


# One thread: llama.cpp's threads spin-wait for each other at every step, so two threads on a
# two-core machine that is busy with anything else run up to a hundred times slower.
THREADS = 1


@pytest.fixture(scope="session")
def llm(smollm2_path: Path) -> LLM:
    return LLM(smollm2_path, n_ctx=2048, threads=THREADS)


def chat(llm: LLM, question: str, system: str = SYSTEM) -> str:
    return llm.format_chat(
        [{"role": "system", "content": system}, {"role": "user", "content": question}]
    )


def test_the_same_prompt_gives_the_same_text(llm: LLM) -> None:
    prompt = chat(llm, "What is the capital of France?")
    first = llm.generate_prompt(prompt, max_tokens=32)
    llm.generate_prompt(chat(llm, "Name a colour."), max_tokens=8)  # something else in between
    second = llm.generate_prompt(prompt, max_tokens=32)
    assert first.strip()
    assert first == second


def test_reusing_the_cache_does_not_change_the_answer(llm: LLM, smollm2_path: Path) -> None:
    # A greedy answer once flipped when all but the last prompt token came from the cache.
    prompt = chat(llm, "Count from 1 to 10.")
    cold = LLM(smollm2_path, n_ctx=2048, threads=THREADS).generate_prompt(prompt, max_tokens=40)
    assert llm.generate_prompt(prompt, max_tokens=40) == cold
    assert llm.generate_prompt(prompt, max_tokens=40) == cold  # all but the last token cached
    llm.generate_prompt(chat(llm, "Name a colour."), max_tokens=8)
    assert llm.generate_prompt(prompt, max_tokens=40) == cold  # the system prompt cached


def test_streaming_yields_pieces_that_join_to_the_whole_text(llm: LLM) -> None:
    prompt = chat(llm, "Count from 1 to 10.")
    pieces = list(llm.stream_prompt(prompt, max_tokens=40))
    assert len(pieces) > 5
    assert "".join(pieces) == llm.generate_prompt(prompt, max_tokens=40)


def test_a_stop_string_ends_the_text_before_it(llm: LLM) -> None:
    prompt = chat(llm, "Count from 1 to 10.")
    full = llm.generate_prompt(prompt, max_tokens=40)
    stop = full[len(full) // 2 :][:3]
    assert stop.strip()
    cut = llm.generate_prompt(prompt, max_tokens=40, stop=[stop])
    assert cut == full[: full.index(stop)]


def test_stats_describe_the_last_generation(llm: LLM) -> None:
    prompt = chat(llm, "Say hello.")
    llm.generate_prompt(prompt, max_tokens=16)
    stats = llm.last_stats
    assert stats["prompt_tokens"] == len(llm.tokenize(prompt))
    assert 0 < stats["completion_tokens"] <= 16
    assert 0 < stats["ttft_s"] <= stats["total_s"]
    assert stats["tokens_per_s"] >= 0
    assert stats["finish_reason"] in {"stop", "length"}


def test_token_probabilities_are_real_and_change_no_answer(llm: LLM, smollm2_path: Path) -> None:
    prompt = chat(llm, "What is the capital of France?")
    answer = llm.generate_prompt(prompt, max_tokens=24)
    stats = llm.last_stats
    # Greedy tokens are the likeliest, so their log-probabilities are real and at most 0.
    assert stats["logprob_min"] <= stats["logprob_first"] <= 0.0
    assert stats["logprob_min"] <= stats["logprob_mean"] <= 0.0
    fresh = LLM(smollm2_path, n_ctx=2048, threads=THREADS).generate_prompt(prompt, max_tokens=24)
    assert fresh == answer


def test_a_fixed_system_prompt_is_read_once_and_reused(llm: LLM) -> None:
    llm.generate_prompt(chat(llm, "Where does fox 3 sleep?", LONG_SYSTEM), max_tokens=4)
    cold = dict(llm.last_stats)
    llm.generate_prompt(chat(llm, "Which garden is it?", LONG_SYSTEM), max_tokens=4)
    warm = dict(llm.last_stats)
    prefix = llm.count_tokens(chat(llm, "", LONG_SYSTEM).split("<|im_start|>user")[0])
    assert cold["prompt_tokens"] > 600
    assert warm["cached_tokens"] > prefix - CHUNK  # whole chunks of it
    assert warm["ttft_s"] < cold["ttft_s"]


def test_a_declared_prefix_is_reused_whole_and_answers_stay_the_same(
    llm: LLM, smollm2_path: Path
) -> None:
    prefix = llm.chat_prefix(LONG_SYSTEM)
    questions = ["Where does fox 3 sleep?", "Which garden is it?", "Where does fox 7 sleep?"]
    fresh = LLM(smollm2_path, n_ctx=2048, threads=THREADS)
    cold = [fresh.generate_prompt(chat(llm, q, LONG_SYSTEM), max_tokens=24) for q in questions[:1]]
    fixed = len(llm.tokenize(prefix))
    assert fixed % CHUNK != 0  # otherwise this tests nothing beyond the plain grid
    warm = []
    for q in questions:
        warm.append(llm.generate_prompt(chat(llm, q, LONG_SYSTEM), max_tokens=24, prefix=prefix))
        assert llm.last_stats["prefix_tokens"] == fixed
    assert llm.last_stats["cached_tokens"] == fixed  # the whole system turn, not whole chunks
    assert warm[0] == cold[0]
    # Read cold, each answer is what it was with the prefix cached.
    for q, answer in zip(questions[1:], warm[1:]):
        other = LLM(smollm2_path, n_ctx=2048, threads=THREADS)
        assert (
            other.generate_prompt(chat(llm, q, LONG_SYSTEM), max_tokens=24, prefix=prefix) == answer
        )
        other.close()
    fresh.close()


def test_a_prefix_pushed_out_by_another_prompt_is_restored_and_answers_stay_the_same(
    llm: LLM, smollm2_path: Path
) -> None:
    # As in a chat follow-up: the question's rewrite (another system turn) runs between two
    # answers, and the answer's system turn comes back from its saved state, not read again.
    prefix = llm.chat_prefix(LONG_SYSTEM)
    fixed = len(llm.tokenize(prefix))
    llm.generate_prompt(
        chat(llm, "Where does fox 3 sleep?", LONG_SYSTEM), max_tokens=4, prefix=prefix
    )
    llm.generate_prompt(chat(llm, "Say hello."), max_tokens=4)
    question = chat(llm, "Which garden is fox 5 in?", LONG_SYSTEM)
    warm = llm.generate_prompt(question, max_tokens=24, prefix=prefix)
    assert llm.last_stats["cached_tokens"] == llm.last_stats["prefix_tokens"] == fixed
    fresh = LLM(smollm2_path, n_ctx=2048, threads=THREADS)
    assert fresh.generate_prompt(question, max_tokens=24, prefix=prefix) == warm
    assert fresh.last_stats["cached_tokens"] == 0  # read, not restored: nothing was saved
    fresh.close()


def test_forget_makes_the_next_prompt_read_cold_with_the_same_answer(llm: LLM) -> None:
    prefix = llm.chat_prefix(LONG_SYSTEM)
    question = chat(llm, "Where does fox 9 sleep?", LONG_SYSTEM)
    warm = llm.generate_prompt(question, max_tokens=16, prefix=prefix)
    llm.forget()
    assert llm.generate_prompt(question, max_tokens=16, prefix=prefix) == warm
    assert llm.last_stats["cached_tokens"] == 0  # neither the cache nor the saved prefix


def test_cached_tokens_are_reused_only_at_batch_starts_read_the_same_way() -> None:
    # (fixed prefix, prompt tokens) before and now; the schedule is 0, 64, ..., f, f+64, ...
    assert _reusable(300, (150, 400), (150, 500)) == 278  # f + 2*64, below the shared 300
    assert _reusable(120, (150, 400), (150, 500)) == 64  # inside the prefix: the plain grid
    assert _reusable(400, (150, 400), (150, 500)) == 342  # the previous last batch was partial
    assert _reusable(500, (150, 406), (150, 500)) == 406  # ... unless it ended on a start
    assert _reusable(300, (100, 400), (150, 500)) == 64  # another prefix: grid below both
    assert _reusable(500, (150, 500), (150, 500)) == 470  # the last token is always read
    assert _reusable(0, (0, 0), (150, 500)) == 0


def test_a_prompt_beyond_the_context_is_refused_before_running(llm: LLM) -> None:
    prompt = chat(llm, "Summarise: " + "lorem ipsum dolor sit amet " * 600)
    with pytest.raises(RagError, match="context"):
        llm.stream_prompt(prompt, max_tokens=64)
    with pytest.raises(RagError, match="2048"):
        llm.generate_prompt(chat(llm, "hi"), max_tokens=2048)
    assert llm.generate_prompt(chat(llm, "Say yes."), max_tokens=4)  # the model is still free


def test_token_counts_are_sane(llm: LLM) -> None:
    assert llm.count_tokens("") == 0
    assert 1 <= llm.count_tokens("hello world") <= 4
    words = "the quick brown fox jumps over the lazy dog " * 20
    assert 150 <= llm.count_tokens(words) <= 300
    prompt = chat(llm, "hi")
    assert llm.count_tokens("<|im_start|>") == 1  # template markers are single tokens
    assert len(llm.tokenize(prompt)) - llm.count_tokens(prompt) in (0, 1)


def test_a_chat_is_rendered_with_the_models_template(llm: LLM) -> None:
    prompt = chat(llm, "Where is the manual?")
    assert SYSTEM in prompt
    assert "Where is the manual?" in prompt
    assert prompt.index(SYSTEM) < prompt.index("Where is the manual?")
    assert prompt.endswith("<|im_start|>assistant\n")


def test_stopping_early_frees_the_model_for_the_next_caller(llm: LLM) -> None:
    pieces = llm.stream_prompt(chat(llm, "Count from 1 to 100."), max_tokens=200)
    next(pieces)
    pieces.close()
    done = threading.Event()

    def other_user() -> None:
        llm.generate_prompt(chat(llm, "Say yes."), max_tokens=4)
        done.set()

    threading.Thread(target=other_user, daemon=True).start()
    assert done.wait(60)


def test_two_users_at_once_get_what_each_would_get_alone(llm: LLM) -> None:
    questions = ["What is the capital of France?", "Count from 1 to 5."]
    alone = [llm.generate_prompt(chat(llm, q), max_tokens=24) for q in questions]
    together: dict[int, str] = {}

    def user(i: int) -> None:
        together[i] = "".join(llm.stream_prompt(chat(llm, questions[i]), max_tokens=24))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [together[0], together[1]] == alone


def test_a_truncated_model_file_is_reported_as_missing(smollm2_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(ModelMissing, match="cut.gguf"):
        LLM(cut)


def test_a_missing_model_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="not") as err:
        LLM(tmp_path / "gone.gguf")
    assert "gone.gguf" in str(err.value)


@pytest.mark.slow
def test_the_default_model_answers_from_a_passage() -> None:
    from importlib.util import find_spec

    from rag import Config

    qwen = PRESETS["qwen2.5-coder-1.5b"]
    models_dir = Config.load().models_dir
    installed = all(find_spec(m) for m in qwen.parts)
    if not installed and not (models_dir / qwen.filename).exists():
        pytest.skip("the qwen parts are not installed: `make models`")
    model = LLM(resolve(qwen.name, models_dir), n_ctx=2048)
    prompt = model.format_chat(
        [
            {"role": "system", "content": "Answer from the passage only, in one sentence."},
            {
                "role": "user",
                "content": "Passage: The backup server is called Juniper and runs every "
                "night at 02:00.\n\nQuestion: When does the backup run?",
            },
        ]
    )
    assert "<|im_start|>system" in prompt
    text = model.generate_prompt(prompt, max_tokens=40)
    assert "02:00" in text or "2" in text
    assert model.generate_prompt(prompt, max_tokens=40) == text
