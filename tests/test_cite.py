"""Citation parsing and refusal detection on the kinds of output small models produce."""

from __future__ import annotations

import dataclasses
import time

import pytest

from rag import cite


@pytest.mark.parametrize(
    ("text", "n", "expected", "used"),
    [
        # plain, valid, already in order
        ("Minsk is the capital [1].", 3, "Minsk is the capital [1].", (1,)),
        ("No citations at all.", 3, "No citations at all.", ()),
        ("", 3, "", ()),
        # renumbering in order of first appearance; repeats keep their number
        ("A [3]. B [1]. C [3].", 3, "A [1]. B [2]. C [1].", (3, 1)),
        ("A [2]. B [2]. C [2].", 4, "A [1]. B [1]. C [1].", (2,)),
        # multi-number markers become adjacent single markers
        ("A [1, 2].", 3, "A [1][2].", (1, 2)),
        ("A [1,2,3].", 3, "A [1][2][3].", (1, 2, 3)),
        ("A [3, 1].", 3, "A [1][2].", (3, 1)),
        ("A [1][2].", 3, "A [1][2].", (1, 2)),
        ("A [2] [2].", 3, "A [1].", (2,)),
        ("A [1; 3].", 3, "A [1][2].", (1, 3)),
        ("A [1 and 3].", 3, "A [1][2].", (1, 3)),
        ("A [1, 2, and 4].", 4, "A [1][2][3].", (1, 2, 4)),
        # ranges, with hyphen, en dash and em dash
        ("A [2-4].", 4, "A [1][2][3].", (2, 3, 4)),
        ("A [2–4].", 4, "A [1][2][3].", (2, 3, 4)),
        ("A [2 — 3].", 4, "A [1][2].", (2, 3)),
        ("A [3-6].", 4, "A [1][2].", (3, 4)),
        # labelled forms and full-width brackets
        ("A [Passage 2].", 3, "A [1].", (2,)),
        ("A [passage 2].", 3, "A [1].", (2,)),
        ("A [Passages 1 and 3].", 3, "A [1][2].", (1, 3)),
        ("A [Passage 1, Passage 3].", 3, "A [1][2].", (1, 3)),
        ("A [source 2].", 3, "A [1].", (2,)),
        ("A [doc 2].", 3, "A [1].", (2,)),
        ("A [Document #3].", 3, "A [1].", (3,)),
        ("A 【2】.", 3, "A [1].", (2,)),
        ("A [^2].", 3, "A [1].", (2,)),
        # out-of-range numbers vanish, whitespace tidied
        ("word [9].", 3, "word.", ()),
        ("word [0].", 3, "word.", ()),
        ("word [9] next.", 3, "word next.", ()),
        ("word [9], next.", 3, "word, next.", ()),
        ("(see [9])", 3, "(see)", ()),
        ("[9] Starts here.", 3, "Starts here.", ()),
        ("Line one [9]\nLine two.", 3, "Line one\nLine two.", ()),
        ("word [1, 9].", 3, "word [1].", (1,)),
        ("word [9][2].", 3, "word [1].", (2,)),
        ("A [4]. B [2].", 3, "A. B [1].", (2,)),
        ("Anything [1].", 0, "Anything.", ()),
        # brackets that are not citations are untouched
        ("[If] there will be war [sic].", 3, "[If] there will be war [sic].", ()),
        ("Founded [1990] as a union [2].", 3, "Founded [1990] as a union [1].", (2,)),
        ("See [a link](http://x) and [note 1].", 3, "See [a link](http://x) and [note 1].", ()),
    ],
)
def test_parse_keeps_valid_citations_and_renumbers_them(
    text: str, n: int, expected: str, used: tuple[int, ...]
) -> None:
    cited = cite.parse(text, n)
    assert cited.text == expected
    assert cited.used == used


def test_renumbered_citations_map_back_to_the_original_passages() -> None:
    cited = cite.parse("Troops moved [3] after talks [1]; again [3] and [2-3].", 3)
    assert cited.text == "Troops moved [1] after talks [2]; again [1] and [1][3]."
    # new number i+1 stands for passage used[i]
    assert cited.used == (3, 1, 2)


def test_unclosed_marker_does_not_backtrack_exponentially() -> None:
    # A label regex with two ways to split its spaces took ~2**n steps here (n=18: ~1 s).
    text = "A 【" + "passage 1 and " * 40 + "x"
    start = time.perf_counter()
    assert cite.parse(text, 3).text == text
    assert time.perf_counter() - start < 1.0


def test_cited_is_frozen() -> None:
    cited = cite.parse("A [1].", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cited.text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        cite.REFUSAL,
        "The documents don't say.",
        "The documents don’t say.",
        "The documents dont say anything about this.",
        "The documents do not contain this information.",
        "The provided passages do not mention the date.",
        "The context doesn't provide an answer.",
        "The document does not seem to say who won.",
        "None of the passages mention the treaty.",
        "The answer is not mentioned in the provided passages.",
        "This is not mentioned in the documents.",
        "It is not stated in the context.",
        "There is no information about the summit in the documents.",
        "There is no information on the casualties in the provided context.",
        "There is not enough information to answer.",
        "I don't know.",
        "I don’t know the answer.",
        "I do not know.",
        "I cannot find that in the passages.",
        "I am not able to determine that.",
        "I couldn’t find the answer.",
        "I'm unable to answer from these documents.",
        "The outcome cannot be determined from the passages.",
        "This can't be determined from the given text.",
        "The text does not provide information about his age.",
        "The passage doesn’t provide any information on that.",
        "That detail is not provided in the documents.",
        "There is no mention of a ceasefire.",
        "There's no mention of it.",
        "THE DOCUMENTS DON'T SAY.",
        "The documents\ndo not\ncontain it.",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert cite.is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Belarus will not be able to defeat NATO [1].",
        "The talks did not produce an agreement [2].",
        "He said he does not know the minister personally [1].",
        "I know the answer: Minsk [1].",
        "The army cannot be defeated easily, analysts say [3].",
        "Sanctions were not lifted in 2022 [1].",
        "The documents say the summit was in Vilnius [1].",
        "There is information about the summit in the documents [2].",
        "No one was hurt [1].",
        "",
    ],
)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert not cite.is_refusal(text)
