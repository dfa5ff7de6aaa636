"""The answer model's chat: the system rules, the numbered passages that fit the context, the
question; and the prompt format's fixed strings (passage fences, stop strings, the refusal)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from . import prompt
from .types import Hit

# The sentence the model is told to write when the passages do not answer, and the one shown.
REFUSAL = "The documents don't say."
# Where a small model, done answering, starts writing the next turn of the example by itself.
ANSWER_STOPS = ("\nQuestion:", "\n\nQuestion", "<passage", "\n\n\n")
# Chat-control markers of the common templates ("<|im_start|>", "</s>", "[INST]").
_CONTROL = re.compile(r"<\|[^|<>]{1,40}\|>|</?s>|\[/?INST\]")
# The prompt's own passage fence: a document that writes it could close its passage early.
_FENCE = re.compile(r"<(?=\s*/?\s*passage\b)", re.IGNORECASE)
# Tokens kept free besides the system turn, the passages, the question and the answer: the
# chat template's own markers.
SLACK = 64

Counter = Callable[[str], int]


def system(prompts_dir: Path) -> str:
    """The system turn: the answering rules, with the refusal sentence (a prompt folder copied
    before the sentence became a placeholder writes it out itself)."""
    template = prompt.load("system", prompts_dir)
    return template.fill(**({"refusal": REFUSAL} if "refusal" in template.placeholders else {}))


def answer_messages(
    question: str,
    hits: Sequence[Hit],
    texts: Sequence[str] | None,
    prompts_dir: Path,
    count_tokens: Counter,
    n_ctx: int,
    max_tokens: int,
) -> tuple[list[dict], list[Hit]]:
    """The chat for one question over numbered passages (`texts`, by default the passages'
    whole text), and the passages that fit the context: the best first; a passage that does
    not fit is left out, not cut."""
    rules = system(prompts_dir)
    budget = n_ctx - max_tokens - count_tokens(rules) - SLACK - 2 * count_tokens(question)
    blocks: list[str] = []
    used: list[Hit] = []
    texts = texts if texts is not None else [h.chunk.text for h in hits]
    for n, (hit, text) in enumerate(zip(hits, texts), start=1):
        block = prompt.fill(
            "passage",
            prompts_dir,
            number=str(n),
            title=inert(hit.chunk.title).replace('"', "'"),
            text=inert(text),
        )
        cost = count_tokens(block)
        if cost > budget:
            break
        budget -= cost
        blocks.append(block)
        used.append(hit)
    user = prompt.fill(
        "question", prompts_dir, passages="\n".join(blocks), question=inert(question)
    )
    return [{"role": "system", "content": rules}, {"role": "user", "content": user}], used


def inert(text: str) -> str:
    """Text with chat-control markers (`<|im_start|>`, `<|endoftext|>` …) and passage tags
    defused, so a document or a question cannot open a new turn in the model's prompt or close
    its passage's fence."""
    text = _CONTROL.sub(lambda m: m.group(0).replace("|", "¦"), text)
    return _FENCE.sub("‹", text)
