"""Citation post-processing of model output: keep valid [n] markers, renumber, spot refusals."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .messages import REFUSAL  # noqa: F401 - the refusal sentence, known in one place

# What small models write inside a citation: "3", "1, 2", "2-4", "Passage 2", "doc 1 and 3".
_LABEL = r"(?:passages?|sources?|docs?|documents?)\s*(?:#\s*)?"
_NUMBER = r"\d{1,3}"  # a bracketed year such as [1990] is not a citation
_ITEM = rf"(?:{_LABEL})?{_NUMBER}(?:\s*[-–—]\s*{_NUMBER})?"
_SEP = r"\s*(?:,\s*and\b|[,;&]|\band\b)\s*"
_BODY = rf"\s*{_ITEM}(?:{_SEP}{_ITEM})*\s*"
_MARKER = rf"(?:\[\^?{_BODY}\]|【{_BODY}】)"
# A run of adjacent markers ("[1][2]", "[1] [3]") is handled as one, with the spaces around it
# so that a marker that vanishes can take its spaces with it.
_RUN = re.compile(rf"(?P<lead>[ \t]*)(?P<run>{_MARKER}(?:[ \t]*{_MARKER})*)(?P<trail>[ \t]*)", re.I)
_ITEM_RE = re.compile(rf"({_NUMBER})(?:\s*[-–—]\s*({_NUMBER}))?")
_LABEL_RE = re.compile(_LABEL, re.I)

# Characters after which a vanished marker leaves no space behind ("word [9]." -> "word.").
_CLOSING = set(".,;:!?)]}»”’'\"…")


@dataclass(frozen=True)
class Cited:
    """An answer with renumbered citations: new number i+1 stands for passage used[i]."""

    text: str
    used: tuple[int, ...]  # original 1-based passage numbers, in order of first citation


def parse(text: str, n_passages: int) -> Cited:
    """Drop citations of passages that don't exist and renumber the rest [1], [2], ... in order."""
    new: dict[int, int] = {}  # original passage number -> new citation number

    def replace(m: re.Match[str]) -> str:
        cited: list[int] = []
        for item in _ITEM_RE.finditer(_LABEL_RE.sub(" ", m.group("run"))):
            first = int(item.group(1))
            last = int(item.group(2) or first)
            lo, hi = min(first, last), max(first, last)
            cited.extend(range(max(lo, 1), min(hi, n_passages) + 1))
        for number in cited:
            new.setdefault(number, len(new) + 1)
        if cited:
            numbers = sorted({new[n] for n in cited})
            return m.group("lead") + "".join(f"[{n}]" for n in numbers) + m.group("trail")
        before = text[m.start() - 1] if m.start() else "\n"
        after = text[m.end()] if m.end() < len(text) else "\n"
        if before == "\n" or after == "\n" or after in _CLOSING:
            return ""
        return " " if m.group("lead") or m.group("trail") else ""

    cleaned = _RUN.sub(replace, text)
    return Cited(cleaned, tuple(new))


# Ways small models say the documents do not hold the answer. Matched on text with straight
# apostrophes and single spaces; each needs a refusal-shaped phrase, not just a "not".
_NOT = r"(?:n'?t|\s+not)"
_SOURCES = r"(?:documents?|passages?|context|sources?|texts?|excerpts?)"
_IN_SOURCES = (
    rf"in\s+(?:any\s+of\s+)?(?:the\s+|these\s+)?(?:provided\s+|given\s+|above\s+)?{_SOURCES}"
)
_REFUSALS = (
    rf"\b{_SOURCES}\s+(?:do|does|did){_NOT}\s+(?:seem\s+to\s+|appear\s+to\s+)?(?:say|contain"
    r"|mention|provide|include|specify|state|address|discuss|cover|answer|give|offer"
    r"|have\s+(?:any\s+)?information)",
    rf"\bnone\s+of\s+the\s+(?:provided\s+|given\s+)?{_SOURCES}\s+(?:say|says|contain|mention|state"
    r"|discuss|address|provide|specify)",
    rf"\bnot\s+(?:explicitly\s+)?(?:mentioned|stated|specified|found|given|provided|covered"
    rf"|discussed|addressed|included|contained|available)\s+(?:anywhere\s+)?{_IN_SOURCES}",
    rf"\bno\s+(?:relevant\s+)?(?:information|mention|details?|data)\b[^.]{{0,100}}?\b{_IN_SOURCES}",
    r"\b(?:not\s+enough|insufficient)\s+(?:information|context|details)\b",
    rf"\bi\s+(?:really\s+)?do{_NOT}\s+know\b",
    r"\bi(?:\s+can(?:'t|not|\s+not)|\s+could(?:n'?t|\s+not)|(?:\s+am|'m)\s+(?:unable|not\s+able)\s+to)"
    r"\s+(?:find|answer|determine|tell|say|locate)\b",
    r"\bcan(?:'t|not|\s+not)\s+be\s+(?:determined|answered|found|inferred)\s+(?:from|based\s+on)",
    rf"\b(?:does|do){_NOT}\s+provide\s+(?:any\s+)?(?:information|details|an\s+answer)",
    r"\bnot\s+provided\s+in\s+the\b",
    r"\bthere(?:\s+is|'s)\s+no\s+mention\b",
)
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _REFUSALS), re.I)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})


def is_refusal(text: str) -> bool:
    """True when the answer says the documents don't contain the answer."""
    return bool(_REFUSAL_RE.search(" ".join(text.translate(_APOSTROPHES).split())))
