"""Checking an answer against the passages it cites: the numbers, names and words it states must
be found there, near the question's own words, and it must say more than the question did."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .chunk import sentences
from .lexical import fold

# Words that carry no fact of their own: function words, and the verbs and nouns answers use
# to frame one ("the passage says", "according to").
STOP = frozenset(
    [
        "a",
        "about",
        "above",
        "according",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "down",
        "during",
        "each",
        "either",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "passage",
        "passages",
        "document",
        "documents",
        "text",
        "source",
        "sources",
        "according",
        "said",
        "says",
        "say",
        "stated",
        "states",
        "mentioned",
        "mentions",
        "answer",
        "question",
        "cited",
    ]
)
OPENERS = frozenset(
    [
        "yes",
        "no",
        "approximately",
        "roughly",
        "nearly",
        "almost",
        "around",
        "over",
        "under",
        "however",
        "although",
        "also",
        "instead",
        "first",
        "firstly",
        "second",
        "finally",
        "yet",
        "still",
        "many",
        "several",
        "most",
        "some",
        "among",
        "unlike",
        "like",
        "while",
        "since",
        "though",
        "unless",
        "whether",
    ]
)
NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
}  # fmt: skip
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[,.]\d+)*")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,-]\s*\d+)*\]")
# A shared beginning this long makes two forms of one name ("Belarus", "Belarusian").
PREFIX = 6


@dataclass(frozen=True)
class Check:
    """What the cited passages back of an answer."""

    ok: bool  # every number and name is found, and the answer is more than the question
    missing: tuple[str, ...] = ()  # numbers and names of the answer found in no cited passage
    echo: bool = False  # the answer adds no word of its own to the question
    support: float = 0.0  # share of the answer's own words found in the cited passages
    coverage: float = 0.0  # share of the question's words found in the cited passages
    local: float = 0.0  # share of the question's words in the sentence the answer comes from
    question_missing: tuple[str, ...] = ()  # the question's numbers and names not found there
    astray: tuple[str, ...] = ()  # numbers stated only in sentences about another thing
    reason: str = ""


def strip_citations(text: str) -> str:
    """An answer's text without its [n] markers."""
    return _CITATION.sub("", text)


def words(text: str) -> list[str]:
    """The folded words of a text, numbers normalised ("1,000" -> "1000")."""
    out = []
    for m in _WORD.finditer(fold(text)):
        w = m.group(0).replace("’", "'")
        if w.endswith("'s"):
            w = w[:-2]
        out.append(NUMBER_WORDS.get(w, w))
    return out


def numbers(text: str) -> set[str]:
    """The numbers a text states, normalised: digits only ("1,000" -> "1000", "2.5" -> "2.5")."""
    found = {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}
    found |= {
        NUMBER_WORDS[m.group(0)] for m in _WORD.finditer(fold(text)) if m.group(0) in NUMBER_WORDS
    }
    return {n.rstrip(".") for n in found}


def names(text: str) -> set[str]:
    """Folded capitalised words that are not the first word of a sentence, nor stop words:
    the names a text states ("Lappo", "Poland", "NATO")."""
    out: set[str] = set()
    for a, b in sentences(text):
        for k, m in enumerate(_WORD.finditer(text[a:b])):
            w = m.group(0)
            folded = words(w)
            if not folded or folded[0] in STOP or folded[0].isdigit():
                continue
            if not w[0].isupper() or len(folded[0]) < 3:
                continue  # "US" against "U.S.", "EU": too short to judge by
            # A sentence's first word is capitalised anyway: a name unless it is a common
            # opener ("Yes", "Approximately", "Threatened").
            opener = k == 0 and sum(c.isupper() for c in w) == 1
            if opener and (folded[0] in OPENERS or folded[0].endswith(("ed", "ing", "ly"))):
                continue
            out.add(folded[0])
    return out


def content(text: str) -> set[str]:
    """The folded words of a text that carry meaning (no stop words, two letters or more)."""
    return {w for w in words(text) if w not in STOP and (len(w) > 1 or w.isdigit())}


def _found(word: str, vocabulary: set[str]) -> bool:
    if word in vocabulary:
        return True
    if word.isdigit() or len(word) < 4:
        return False
    # Another form of the same word: "threatened"/"threat", "Belarusian"/"Belarus".
    stem = word[: max(PREFIX, 4)] if len(word) >= PREFIX else word
    return any(v.startswith(stem) or (len(v) >= PREFIX and word.startswith(v)) for v in vocabulary)


def check(answer: str, question: str, passages: Sequence[str], others: Sequence[str] = ()) -> Check:
    """Check an answer's text (citations and all) against the texts of the passages it cites.

    Hard failures (the answer is not shown): a number or a name the passages never state, an
    answer that only restates the question, or no cited passage. The shares are signals for
    the refusal decision (`rag.confidence`). `others` are the texts of the passages shown
    with them but not cited: where they name what a "how many" question counts and the cited
    number's own sentence does not, the number was taken from beside the fact asked.
    """
    said = strip_citations(answer).strip()
    if not passages:
        return Check(False, reason="it cites no passage")
    text = "\n".join(passages)
    vocabulary = set(words(text))
    stated_numbers = numbers(said)
    passage_numbers = numbers(text)
    missing = sorted(n for n in stated_numbers if n not in passage_numbers)
    asked = content(question)
    missing += sorted(n for n in names(said) if not _found(n, vocabulary) and n not in asked)
    own = content(said) - asked
    echo = not own
    support = _share(own, vocabulary)
    coverage = _share(asked, vocabulary)
    local = _local_coverage(own, asked, passages)
    question_missing = tuple(
        sorted(
            n
            for n in (numbers(question) | names(question))
            if n not in passage_numbers and not _found(n, vocabulary)
        )
    )
    counted = counted_thing(question)
    reason = ""
    astray = _counted_elsewhere(stated_numbers - numbers(question), counted, passages, others)
    if missing:
        reason = f"the cited passages never state {', '.join(repr(m) for m in missing)}"
    elif echo:
        reason = "the answer only restates the question"
    elif counted and not any(_found(w, vocabulary) for w in counted):
        # "How many tanks …?" answered with a number from a passage that never mentions tanks:
        # whatever it counts, it is not what was asked.
        reason = f"the question asks how many {' '.join(counted)}; the cited passages never say"
    elif astray:
        # The neighbouring fact: "How many Russian troops…?" answered with the size of another
        # army, from a sentence that never speaks of troops.
        thing = counted_head(counted)
        reason = f"the cited passages state {', '.join(astray)} of something other than {thing}"
    return Check(
        ok=not reason,
        missing=tuple(missing),
        astray=astray,
        echo=echo,
        support=support,
        coverage=coverage,
        local=local,
        question_missing=question_missing,
        reason=reason,
    )


_HOW_MANY = re.compile(r"\bhow\s+(?:many|much)\s+((?:[^\W\d_][\w'’-]*\s+){0,4})", re.IGNORECASE)
# Where the thing counted ends: "How many tanks | does the army have?"
_PHRASE_END = frozenset(
    [
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "will",
        "would",
        "can",
        "could",
        "have",
        "has",
        "had",
        "should",
        "may",
        "might",
        "per",
        "in",
        "of",
        "on",
        "at",
        "for",
        "from",
        "by",
    ]
)


def counted_thing(question: str) -> tuple[str, ...]:
    """The words of what a "how many …" or "how much …" question counts ("tanks" in "How many
    tanks does the army have?"), folded; empty for other questions."""
    m = _HOW_MANY.search(question)
    if not m:
        return ()
    out = []
    for w in words(m.group(1)):
        if w in _PHRASE_END:
            break
        if w not in STOP and len(w) >= 3:
            out.append(w)
    return tuple(out)


# Things so often counted in other words ("350 officials and experts" for "how many people")
# that a sentence not naming them says nothing.
GENERIC_COUNTS = frozenset(
    [
        "people",
        "persons",
        "person",
        "times",
        "time",
        "years",
        "year",
        "months",
        "month",
        "weeks",
        "week",
        "days",
        "day",
        "hours",
        "hour",
        "minutes",
        "minute",
        "seconds",
        "second",
        "percent",
        "percentage",
    ]
)


def astray_passages(answer: str, question: str, passages: Sequence[str]) -> list[int]:
    """The indexes of the passages an answer to "how many X" took a number from that they
    state of something other than X (the passages to leave out when asking again)."""
    stated = numbers(strip_citations(answer)) - numbers(question)
    counted = counted_thing(question)
    return [
        i
        for i, text in enumerate(passages)
        if _counted_elsewhere(stated, counted, [text], [*passages[:i], *passages[i + 1 :]])
    ]


def counted_head(counted: Sequence[str]) -> str:
    """The noun of what is counted: its last plural word ("troops" in "Russian troops"), else
    its first word ("people" in "people attended")."""
    plural = [w for w in counted if w.endswith("s") and not w.endswith("ss")]
    return plural[-1] if plural else counted[0]


def _counted_elsewhere(
    stated: set[str], counted: Sequence[str], passages: Sequence[str], others: Sequence[str]
) -> tuple[str, ...]:
    """The answer's numbers that only passages never naming the thing the question counts
    state, while a passage shown but not cited does name it: the count asked is elsewhere.
    Empty when the thing is too generic to judge by ("people", "times") or named nowhere else
    (the passages may say it in other words). A cited passage that names the thing anywhere
    backs its numbers: "thousands of Huguenots were killed … Nearly 3,000 Protestants were
    slaughtered in Toulouse" answers how many Huguenots were killed in Toulouse."""
    if not stated or not counted:
        return ()
    head = counted_head(counted)
    if head in GENERIC_COUNTS:
        return ()
    near: dict[str, bool] = {}
    for text in passages:
        named = _found(head, set(words(text)))
        for n in numbers(text) & stated:
            near[n] = near.get(n, False) or named
    named_elsewhere = any(
        _found(head, set(words(text))) and not numbers(text) & stated for text in others
    )
    if not named_elsewhere:
        return ()
    return tuple(sorted(n for n, named in near.items() if not named))


def _share(terms: set[str], vocabulary: set[str]) -> float:
    if not terms:
        return 1.0
    return sum(_found(t, vocabulary) for t in terms) / len(terms)


def _local_coverage(own: set[str], asked: set[str], passages: Sequence[str]) -> float:
    """The share of the question's words in the sentence that holds most of the answer's own
    words: an answer taken from a sentence about something else (the neighbouring fact) scores
    low. (A sentence that says "he" for the question's subject scores low too: a signal, not a
    rule.)"""
    if not asked:
        return 1.0
    best: tuple[int, float] = (-1, 0.0)
    for text in passages:
        for a, b in sentences(text):
            terms = set(words(text[a:b]))
            hits = sum(_found(t, terms) for t in own) if own else 0
            score = _share(asked, terms)
            if hits > best[0] or (hits == best[0] and score > best[1]):
                best = (hits, score)
    return best[1]


def quote_spans(text: str, answer: str, limit: int = 2) -> list[tuple[int, int]]:
    """The spans of the (at most `limit`) sentences of a passage that hold most of the
    answer's own words: what the citation quotes."""
    own = content(strip_citations(answer))
    if not own:
        return []
    scored = []
    for a, b in sentences(text):
        terms = set(words(text[a:b]))
        hits = sum(_found(t, terms) for t in own)
        if hits:
            scored.append((hits, a, b))
    scored.sort(key=lambda s: (-s[0], s[1]))
    if not scored:
        return []
    best = scored[0][0]
    keep = [(a, b) for hits, a, b in scored[:limit] if hits * 2 >= best]
    return sorted(keep)


def marks(text: str, answer: str) -> list[tuple[int, int]]:
    """Spans of the words of `text` that the answer uses (its own words, not stop words)."""
    own = content(strip_citations(answer))
    out = []
    for m in _WORD.finditer(text):
        folded = words(m.group(0))
        if folded and folded[0] not in STOP and _found(folded[0], own):
            out.append((m.start(), m.end()))
    return out
