"""Cleaning: look-alike letters, odd spaces, web chrome, and the map back to the original."""

from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

import pytest

from rag.clean import HOMOGLYPHS, clean, original_span

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
CYRILLIC_IN_LATIN_WORD = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")


def cleaned(text: str) -> str:
    return clean(text)[0]


def seed(number: str) -> str:
    (path,) = SEEDS.glob(f"{number}_*.txt")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("h\u0430ve", "have"),
        ("Bel\u0430rusi\u0430n", "Belarusian"),
        ("\u0421ount\u0435r", "Counter"),  # Cyrillic capital С and small е
        ("\u03bfpen", "open"),  # Greek omicron
    ],
)
def test_look_alike_letters_in_a_latin_word_become_latin(written: str, expected: str) -> None:
    assert cleaned(f"We {written} it.") == f"We {expected} it."


@pytest.mark.parametrize("word", ["привет", "рус", "αβγ", "Ελλάδα", "Москва"])
def test_wholly_cyrillic_or_greek_words_are_left_alone(word: str) -> None:
    assert cleaned(f"The word {word} is foreign.") == f"The word {word} is foreign."
    assert cleaned(word) == word


def test_a_lone_cyrillic_a_between_english_words_is_the_article() -> None:
    assert cleaned("requires \u0430 response") == "requires a response"
    assert cleaned("мама и \u0430 папа") == "мама и \u0430 папа"


def test_greek_letter_used_as_a_symbol_stays() -> None:
    assert cleaned("TNF\u03b1 levels rose") == "TNF\u03b1 levels rose"


def test_every_homoglyph_maps_to_an_ascii_letter() -> None:
    assert all(len(twin) == 1 and twin.isascii() and twin.isalpha() for twin in HOMOGLYPHS.values())


def test_odd_spaces_become_one_space_and_invisible_characters_go() -> None:
    assert cleaned("a\u00a0b\u2009c\u3000d\te") == "a b c d e"
    assert cleaned("zero\u200bwidth and soft\u00adhyphen\ufeff") == "zerowidth and softhyphen"
    assert cleaned("  many     spaces   here   ") == "many spaces here"


def test_nfkc_expands_ligatures_and_keeps_curly_quotes() -> None:
    assert cleaned("the \ufb01nal o\ufb03ce") == "the final office"
    assert (
        cleaned("\u201cquoted\u201d and \u2018single\u2019")
        == "\u201cquoted\u201d and \u2018single\u2019"
    )
    assert cleaned("e\u0301t\u00e9") == "\u00e9t\u00e9"


def test_blank_line_runs_collapse_and_line_ends_are_stripped() -> None:
    assert cleaned("\n\none  \n\n\n\n\ntwo\r\nthree\n\n") == "one\n\ntwo\nthree"


def test_empty_text() -> None:
    assert clean("") == ("", (0,))
    assert clean(" \n\t\n") == ("", (4,))


ARTICLE = """\
Home / World / Europe

Storm Closes Alpine Passes for a Second Day

Heavy snow closed three Alpine passes on Tuesday, stranding hundreds of drivers overnight.
AFP_2024-0311_alps55.jpg
IMG_20240311_094512

- Advertisement -

Rescue teams reached the last stranded cars before dawn, the regional police said.
Share on Facebook
Sign up for our daily newsletter
"We have never seen drifts this deep in March," said one mountain guide.
Photo: Anna Keller/Reuters
Have a news tip? Email us at tips@example.com
Related: Avalanche warnings raised across Tyrol
https://example.com/alps/storm
Forecasters expect the passes to reopen on Thursday.
"""


def test_web_chrome_lines_go_and_sentences_stay() -> None:
    text = cleaned(ARTICLE)
    for chrome in [
        "Home / World",
        "alps55",
        "IMG_2024",
        "Advertisement",
        "Share on Facebook",
        "newsletter",
        "Photo:",
        "news tip",
        "Related:",
        "example.com",
    ]:
        assert chrome not in text
    assert text == (
        "Storm Closes Alpine Passes for a Second Day\n\n"
        "Heavy snow closed three Alpine passes on Tuesday, stranding hundreds of drivers"
        " overnight.\n\n"
        "Rescue teams reached the last stranded cars before dawn, the regional police said.\n"
        '"We have never seen drifts this deep in March," said one mountain guide.\n'
        "Forecasters expect the passes to reopen on Thursday."
    )


@pytest.mark.parametrize(
    "line",
    [
        "Share prices fell sharply across Europe on Monday morning.",
        "Subscribers to the service complained that the new app kept crashing all week.",
        '"Sign up now," the recruiter shouted at the passing crowd.',
        "Input / Output",
        "Save the date",
        "Source code for the parser is in the appendix, along with the test data.",
        "The newsletter was launched in 2019.",
        "## See also",
        "# Print",
    ],
)
def test_ordinary_lines_are_not_taken_for_chrome(line: str) -> None:
    assert cleaned(f"First paragraph.\n\n{line}\n\nLast paragraph.") == (
        f"First paragraph.\n\n{line}\n\nLast paragraph."
    )


def test_a_wrapped_sentence_that_starts_like_chrome_is_kept() -> None:
    text = "If you want the full report you can\nclick here to download it from the archive."
    assert cleaned(text) == text


def test_markdown_table_rows_are_not_breadcrumbs() -> None:
    table = "Name | Town | Role\n--- | --- | ---\nAnna | Graz | Guide"
    assert cleaned(table) == table


def test_seed_with_look_alike_letters_reads_as_latin() -> None:
    text = cleaned(seed("003"))
    assert "have" in text and "railway" in text and "Belarusian" in text
    assert "\u0430" not in text
    assert not CYRILLIC_IN_LATIN_WORD.search(text)


def test_seed_chrome_is_removed() -> None:
    beast = cleaned(seed("004"))
    assert "ADVERTISEMENT" not in beast and "Got a tip?" not in beast
    assert "GettyImages" not in beast
    assert "The warning comes just as Ukrainian forces prepare" in beast
    presstv = cleaned(seed("001"))
    assert "SHARE THIS ARTICLE" not in presstv and "www.presstv.co.uk" not in presstv
    assert "News / Russia" not in presstv
    assert presstv.startswith("Belarus bound to defend Russia in case of aggression")
    assert "- Advertisement -" not in cleaned(seed("000"))
    assert "Image: Reuters." not in cleaned(seed("002"))


TWINS = str.maketrans(HOMOGLYPHS)


def nfkc_words(text: str) -> str:
    """Text as cleaning sees it, ignoring which script a look-alike letter is written in."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(TWINS).split())


MAPPED = (
    "Intro:\u00a0the \ufb01rst  o\ufb03cial\u2003report.\n"
    "- Advertisement -\n"
    "\n\n\n"
    "Caf\u00e9 na\u0131\u0308ve h\u0430ve \u2460 items\u200b here\t\tnow.\r\n"
    "SHARE THIS ARTICLE\n"
    "Full\uff37idth \u0440\u0443\u0441 text and \ufb00 ligatures end."
)


def test_offsets_point_at_the_original_characters() -> None:
    text, offsets = clean(MAPPED)
    assert len(offsets) == len(text) + 1 and offsets[-1] == len(MAPPED)
    assert list(offsets) == sorted(offsets)
    for i, char in enumerate(text):
        source = MAPPED[offsets[i]]
        if char == "\n":
            assert source in "\r\n"
        elif char == " ":
            assert source.isspace() or unicodedata.normalize("NFKC", source) == " "
        else:
            expanded = unicodedata.normalize("NFKC", source)
            assert char in expanded or char in expanded.translate(TWINS), (i, char, source)


def test_original_span_of_words_gives_the_words_as_written() -> None:
    text, offsets = clean(MAPPED)
    cases = {
        "first official report": "\ufb01rst  o\ufb03cial\u2003report",
        "fi": "\ufb01",
        "have": "h\u0430ve",
        "1 items": "\u2460 items",
        "FullWidth": "Full\uff37idth",
        "ff ligatures": "\ufb00 ligatures",
        "рус": "\u0440\u0443\u0441",
    }
    for cleaned_words, written in cases.items():
        start = text.index(cleaned_words)
        a, b = original_span(offsets, start, start + len(cleaned_words))
        assert MAPPED[a:b] == written


def test_original_span_across_a_dropped_line_spans_it() -> None:
    text, offsets = clean(MAPPED)
    start, end = text.index("report."), text.index("Caf") + 3
    a, b = original_span(offsets, start, end)
    assert MAPPED[a:b].startswith("report.") and MAPPED[a:b].endswith("Caf")
    assert "Advertisement" in MAPPED[a:b]


def test_original_span_of_random_word_runs_matches_after_normalising() -> None:
    text, offsets = clean(MAPPED)
    rng = random.Random(7)
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", text)]
    for _ in range(300):
        line_start, line = rng.choice(lines)
        bounds = [0] + [m.end() for m in re.finditer(r"\S+", line)]
        i, j = sorted(rng.sample(range(len(bounds)), 2))
        a, b = line_start + bounds[i], line_start + bounds[j]
        start, end = original_span(offsets, a, b)
        written = nfkc_words(MAPPED[start:end]).replace("\u200b", "")
        assert written == nfkc_words(text[a:b])


def test_original_span_edges() -> None:
    text, offsets = clean("  ab\n\nAdvertisement\n\ncd  ")
    assert text == "ab\n\ncd"
    assert original_span(offsets, 0, 0) == (2, 2)
    assert original_span(offsets, 0, 2) == (2, 4)
    assert original_span(offsets, 4, 6) == (21, 23)
    assert original_span(offsets, len(text), len(text)) == (25, 25)
    assert original_span(offsets, -5, 99) == (2, 23)
    assert original_span(offsets, 3, 1) == (offsets[3], offsets[3])
    assert original_span((0,), 0, 0) == (0, 0)


def test_large_ascii_document_cleans_quickly() -> None:
    import time

    body = (seed("000") + "\n") * 2000  # about 6 MB
    began = time.perf_counter()
    text, offsets = clean(body)
    assert time.perf_counter() - began < 10
    assert len(offsets) == len(text) + 1
