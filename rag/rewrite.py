"""Follow-up questions rewritten to stand alone: whether one leans on the conversation, the
chat that asks the model to rewrite it, and whether the rewrite can be used."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from . import prompt
from .verify import strip_citations

# Words that make a question lean on the conversation before it.
_FOLLOW_UP = re.compile(
    r"\b(he|she|it|they|him|her|them|his|hers|its|their|theirs|this|that|these|those|"
    r"there|then|the same|the other|else|more|also|again)\b",
    re.IGNORECASE,
)
MAX_TOKENS = 64
STOPS = ("\n",)
# Characters of one earlier turn kept for the rewrite.
TURN_CHARS = 600


def needs_rewrite(question: str, history: Sequence[dict] | None) -> bool:
    """Whether a question leans on earlier turns (a pronoun and a history to resolve it)."""
    return any(t.get("content") for t in history or []) and bool(_FOLLOW_UP.search(question))


def messages(
    question: str,
    history: Sequence[dict],
    prompts_dir: Path,
    count_tokens: Callable[[str], int],
    budget: int,
) -> list[dict]:
    """The chat asking the model to rewrite `question`: the latest turns of `history` that fit
    `budget` tokens (citation markers dropped), then the question."""
    lines: list[str] = []
    for turn in reversed([t for t in history if t.get("content")]):
        who = "User" if turn.get("role") == "user" else "Assistant"
        line = f"{who}: {strip_citations(str(turn['content']))[:TURN_CHARS]}"
        cost = count_tokens(line)
        if cost > budget:
            break
        budget -= cost
        lines.insert(0, line)
    text = prompt.fill("rewrite", prompts_dir, history="\n".join(lines), question=question)
    return [{"role": "user", "content": text}]


def accept(rewritten: str, question: str) -> str:
    """The rewrite to search with, or the question itself when the rewrite lost it (empty, or
    an answer instead of a question)."""
    rewritten = rewritten.strip().strip('"').strip()
    if len(rewritten) < 8 or len(rewritten) > 4 * len(question) + 200:
        return question
    return rewritten
