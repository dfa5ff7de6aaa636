"""Cleaning: normalise text, repair look-alike letters, drop web chrome, map to the original."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence

from .types import Offsets

VERSION = 2  # bumped when cleaning changes, so indexes made with older rules rebuild

# Latin twins of Cyrillic and Greek letters that look the same. They are swapped only inside a
# word that already has a Latin letter, where they are copy-paste or anti-scraping noise
# ("h\u0430ve"); wholly Cyrillic or Greek words are left alone.
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic small: а е о р с у х і ј ѕ ԁ ԛ ԝ һ ӏ ү
    "\u0430": "a",
    "\u0435": "e",
    "\u043e": "o",
    "\u0440": "p",
    "\u0441": "c",
    "\u0443": "y",
    "\u0445": "x",
    "\u0456": "i",
    "\u0458": "j",
    "\u0455": "s",
    "\u0501": "d",
    "\u051b": "q",
    "\u051d": "w",
    "\u04bb": "h",
    "\u04cf": "l",
    "\u04af": "y",
    # Cyrillic capital: А В Е К М Н О Р С Т Х І Ј Ѕ Ү Ԛ Ԝ Ӏ
    "\u0410": "A",
    "\u0412": "B",
    "\u0415": "E",
    "\u041a": "K",
    "\u041c": "M",
    "\u041d": "H",
    "\u041e": "O",
    "\u0420": "P",
    "\u0421": "C",
    "\u0422": "T",
    "\u0425": "X",
    "\u0406": "I",
    "\u0408": "J",
    "\u0405": "S",
    "\u04ae": "Y",
    "\u051a": "Q",
    "\u051c": "W",
    "\u04c0": "I",
    # Greek small: ο α ν ρ τ ι κ υ χ ϲ ϳ
    "\u03bf": "o",
    "\u03b1": "a",
    "\u03bd": "v",
    "\u03c1": "p",
    "\u03c4": "t",
    "\u03b9": "i",
    "\u03ba": "k",
    "\u03c5": "u",
    "\u03c7": "x",
    "\u03f2": "c",
    "\u03f3": "j",
    # Greek capital: Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ
    "\u0391": "A",
    "\u0392": "B",
    "\u0395": "E",
    "\u0396": "Z",
    "\u0397": "H",
    "\u0399": "I",
    "\u039a": "K",
    "\u039c": "M",
    "\u039d": "N",
    "\u039f": "O",
    "\u03a1": "P",
    "\u03a4": "T",
    "\u03a5": "Y",
    "\u03a7": "X",
}
_TWINS = str.maketrans(HOMOGLYPHS)
_CONFUSABLE = re.compile("[" + "".join(HOMOGLYPHS) + "]")
_CYRILLIC_OR_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u052f]")
_CYRILLIC = re.compile(r"[\u0400-\u052f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
_WORD = re.compile(r"[^\W\d_]+")
# A Greek letter glued to an upper-case acronym is a symbol ("TNF\u03b1", "ER\u03b1"), not a twin.
_GREEK_SYMBOL = re.compile(r"[A-Z]+[\u0370-\u03ff]|[\u0370-\u03ff][A-Z]+")

# Line breaks of every kind; each becomes "\n".
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Odd spaces that become a plain space (NFKC already maps most of them; tab and ogham do not).
_SPACE_CHARS = frozenset(
    "\t\u00a0\u1680\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
)
# Characters that need the slow path: controls, odd spaces, and invisible format characters
# (zero-width space/joiners, soft hyphen, bidi marks, BOM, tags), and lone surrogates.
_SPECIAL = re.compile(
    "[\x00-\x09\x0e-\x1f\x7f-\x9f\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u1680\u180e\u2000-\u200f\u202a-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff"
    "\ud800-\udfff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_ASCII_RUN = re.compile(r"[ -~]+|[^ -~]+")
_SPACE_RUN = re.compile(r"  +")

# Web chrome. A line is dropped when, stripped of bullets/brackets/dashes at its ends, it fully
# matches one of these, has at most _MAX_WORDS words (_MAX_PROMPT_WORDS for calls to action,
# which run longer) and holds no quotation mark.
_MAX_WORDS = 8
_MAX_PROMPT_WORDS = 20
_MAX_CHROME_CHARS = 400
_EDGES = " -\u2013\u2014*\u2022\u00b7|>[](){}"  # bullets, dashes, brackets; not Markdown "#"
_WORD_TOKEN = re.compile(r"[^\w\s]*\w\S*")  # a whitespace-separated token with a letter or digit
_QUOTE = re.compile('["\u201c\u201d\u201e\u00ab\u00bb\u2018]')
_AGENCY = (
    r"(?:getty images|reuters|afp|ap(?: photo)?|associated press|shutterstock|alamy|epa(?:-efe)?"
    r"|bloomberg|istock(?:photo)?|unsplash|pexels|wikimedia commons|anadolu(?: agency)?|tass"
    r"|xinhua|sputnik|pool)"
)
_TLD = (
    r"(?:com|org|net|edu|gov|mil|int|info|biz|io|co|uk|us|ca|au|de|fr|es|it|nl|eu|ru|by|ua|pl"
    r"|in|cn|jp|news|tv)"
)
_URL = rf"(?:(?:https?://|www\.)\S+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.{_TLD}(?:/\S*)?)"
_CHROME_LINE = re.compile(
    "|".join(
        [
            # advertisement markers
            r"(?:advertisements?|advertising|ads?|sponsored(?: (?:content|post|links?|stories))?"
            r"|paid (?:content|post|partnership)|promoted(?: (?:content|stories))?"
            r"|(?:story|article) continues (?:below|after)"
            r"(?: (?:this |the )?(?:advertisement|ad))?)",
            # share, follow and subscribe prompts
            r"(?:share|tweet|email|print|save)(?: (?:this|the))?"
            r"(?: (?:article|story|post|page|link))?(?: (?:on|via) \w+(?: \w+)?)?",
            r"follow (?:us|me|[\w'\u2019 .]{1,40}?) on (?:facebook|twitter|x|instagram|linkedin"
            r"|youtube|telegram|tiktok|threads|bluesky|mastodon|whatsapp|social media|google news)",
            r"follow us\b.*",
            r"(?:subscribe|sign[ -]?up|join us)"
            r"(?: (?:now|here|today|free|for free|(?:to|for|on) .+))?",
            r"(?:get|receive|don'?t miss|never miss)\b.*\bnewsletters?\b.*",
            # "read more" style links
            r"(?:read more|read next|read also|also read|see also|related(?: (?:articles?|stories"
            r"|coverage|content|posts|news|reading))?|recommended(?: for you)?"
            r"|you (?:may|might) also like|more on this(?: story| topic)?|most (?:read|popular))"
            r"(?:\s*[:\u203a\u00bb>|-].*)?",
            r"click here\b.*",
            r"skip to (?:main )?content|back to top|scroll to top|(?:show|view|leave a) comments?"
            r"|\d* ?comments?",
            # image ids and file names: one token with a long digit run and _ or -
            r"(?=\S*\d{4})(?=\S*[_-])(?=\S{10,})[\w.-]+",
            r"\S+\.(?:jpe?g|png|gif|webp|tiff?|bmp|heic|avif|svg)",
            # credits and copyright notices
            r"(?:photo|image|picture|photograph|illustration|video|graphic|credit|source|pictured"
            r"|caption)(?:s| credit| source| courtesy)?\s*(?:by\b|:).*",
            rf".{{0,80}}?(?:/|\bvia\b|\bcourtesy(?: of)?\b|\u00a9)\s*{_AGENCY}\b.*",
            r"(?:\u00a9|\(c\)|copyright)\s*\u00a9?\s*(?:\d{4}|.*\ball rights reserved).*",
            # lines that are only links
            rf"{_URL}(?:\s+{_URL})*",
        ]
    ),
    re.IGNORECASE,
)
_CHROME_PROMPT = re.compile(
    "|".join(
        [
            r"(?:got|have) (?:a|any) (?:news |story )?tips?\b.*",
            r"(?:subscribe|sign[ -]?up|register|join)\b.*\b(?:newsletters?|inbox|e-?mail|updates"
            r"|alerts|mailing list)\b.*",
            r"(?:get|receive)\b.*\b(?:newsletters?|in your inbox)\b.*",
            r".*\bcan (?:also )?be (?:accessed|reached|found|viewed|read) at the following"
            r" (?:alternate|alternative|mirror|other) (?:addresses|domains|urls|sites|links)",
            r".*\b(?:(?:we|this (?:site|website)|our (?:site|website)) uses? cookies"
            r"|accept (?:all )?cookies|cookie (?:policy|settings|preferences|consent))\b.*",
        ]
    ),
    re.IGNORECASE,
)
# Breadcrumbs: three or more short items separated by " / ", " | ", " > ", or two with › or ».
_CRUMB = r"[^\W\d][\w'\u2019&.-]*(?: [^\W\d][\w'\u2019&.-]*){0,2}"
_BREADCRUMB = re.compile(
    rf"{_CRUMB}(?:(?:\s+[/|>]\s+|\s*[\u203a\u00bb]\s*){_CRUMB}){{2,}}"
    rf"|{_CRUMB}(?:\s*[\u203a\u00bb]\s*{_CRUMB})+"
)
# A Markdown table delimiter row: when a document has one, " | " lines are table rows.
_TABLE_RULE = re.compile(
    r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$", re.MULTILINE
)
_OPEN_END = re.compile(r"[\w,;-]$")
# A table row as the readers write it ("Year: 2023; Source: Federal grant"): never chrome, even
# when its first header is a word that starts a credit line ("Source:", "Photo:").
_TABLE_ROW = re.compile(r"[^:;]{1,80}: [^;]*(?:; [^:;]{1,80}: [^;]*)+")


def clean(original: str) -> tuple[str, Offsets]:
    """Clean a document's text; return it with offsets[i] = index in `original` of cleaned char i.

    `offsets` has one extra final entry, len(original); it is stored compactly as runs (see
    `rag.types.Offsets`), so memory grows with the number of lines, not of characters. Steps: NFKC, odd spaces to one space,
    invisible characters removed, look-alike Cyrillic/Greek letters inside Latin words repaired,
    web-chrome lines dropped, spaces collapsed and lines stripped, blank-line runs collapsed.
    """
    pieces: list[str] = []
    offsets = Offsets()
    previous = ""  # the last kept line
    previous_break = -1  # where the line break after it is in `original`
    blank_break = -1  # the first blank line's break since then, or -1
    pipes_are_tables = "|" in original and _TABLE_RULE.search(original) is not None
    for start, end in _line_spans(original):
        line, line_offsets = _normalize(original[start:end], start)
        if not line:
            if previous and blank_break < 0:
                blank_break = end
            continue
        if not line.isascii():
            line = _repair(line)
        # A lower-case line right after an unfinished one continues a wrapped sentence: keep it.
        continues = blank_break < 0 and line[0].islower() and _OPEN_END.search(previous) is not None
        if not continues and _is_chrome(line, pipes_are_tables):
            continue
        if previous:
            pieces.append("\n")
            offsets.append(previous_break)
            if blank_break >= 0:
                pieces.append("\n")
                offsets.append(blank_break)
        pieces.append(line)
        offsets.extend(line_offsets)
        previous, previous_break, blank_break = line, end, -1
    offsets.append(len(original))
    return "".join(pieces), offsets


def original_span(offsets: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """The span of the original text that cleaned span [start, end) came from.

    That is original[offsets[start]:offsets[end - 1] + 1]; out-of-range bounds are clipped and
    an empty span maps to an empty span at the matching original position.
    """
    size = len(offsets) - 1
    start = min(max(start, 0), size)
    end = min(max(end, start), size)
    if end == start:
        return offsets[start], offsets[start]
    return offsets[start], offsets[end - 1] + 1


def _line_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each line; `end` is where its line break is (or the end of the text)."""
    start = 0
    for match in _LINE_BREAK.finditer(text):
        yield start, match.start()
        start = match.end()
    yield start, len(text)


def _normalize(line: str, start: int) -> tuple[str, Sequence[int]]:
    """NFKC, odd spaces and invisible characters for one line; spaces collapsed, ends stripped."""
    if _is_plain(line):
        return _squeeze(line, range(start, start + len(line)))
    chars: list[str] = []
    offsets = Offsets()
    # Printable ASCII never changes and never composes with what follows it, so only the
    # other runs need looking at.
    for run in _ASCII_RUN.finditer(line):
        text, at = run.group(), start + run.start()
        if " " <= text[0] <= "~":
            chars.append(text)
            offsets.extend(range(at, at + len(text)))
            continue
        if chars and _joins(chars[-1][-1:], text[0]):
            # "e" + combining accent: the base letter joins the run.
            chars[-1] = chars[-1][:-1]
            offsets.pop()
            text, at = line[run.start() - 1 : run.end()], at - 1
        elif _is_plain(text):
            chars.append(text)
            offsets.extend(range(at, at + len(text)))
            continue
        _normalize_chars(text, at, chars, offsets)
    return _squeeze("".join(chars), offsets)


def _is_plain(text: str) -> bool:
    """Whether NFKC and the character rules leave `text` as it is (the fast path)."""
    return (text.isascii() or unicodedata.is_normalized("NFKC", text)) and not _SPECIAL.search(text)


def _normalize_chars(word: str, at: int, chars: list[str], offsets: Offsets) -> None:
    """The slow path: NFKC per cluster (a character and what composes with it); every output
    character maps to its cluster's first original index."""
    i, n = 0, len(word)
    while i < n:
        j = i + 1
        while j < n and ord(word[j]) >= 128 and _joins(word[i:j], word[j]):
            j += 1
        if j == i + 1 and " " <= word[i] <= "~":  # printable ASCII on its own: as it is
            chars.append(word[i])
            offsets.append(at + i)
            i = j
            continue
        for char in unicodedata.normalize("NFKC", word[i:j]):
            if char in _SPACE_CHARS:
                char = " "
            elif unicodedata.category(char) in _DROPPED_CATEGORIES:
                continue
            chars.append(char)
            offsets.append(at + i)
        i = j


def _joins(cluster: str, char: str) -> bool:
    """Whether `char` belongs to the cluster before it under NFKC (a combining mark, or a
    character that composes with it, like a Hangul vowel jamo)."""
    if not char or not cluster:
        return False
    if unicodedata.combining(char):
        return True
    # Only marks, conjoining jamo and characters with a decomposition can compose backwards.
    if not (
        unicodedata.decomposition(char)
        or unicodedata.category(char).startswith("M")
        or "\u1160" <= char <= "\u11ff"
    ):
        return False
    nfkc = unicodedata.normalize
    return nfkc("NFKC", cluster + char) != nfkc("NFKC", cluster) + nfkc("NFKC", char)


def _squeeze(line: str, offsets: Sequence[int]) -> tuple[str, Sequence[int]]:
    """Collapse runs of spaces to one and strip the ends, keeping the offsets in step."""
    stripped = line.strip(" ")
    left = len(line) - len(line.lstrip(" "))
    if "  " not in stripped:
        if len(stripped) == len(line):
            return line, offsets
        return stripped, offsets[left : left + len(stripped)]
    parts: list[str] = []
    kept = Offsets()
    done = 0
    for run in _SPACE_RUN.finditer(stripped):
        keep = run.start() + 1  # up to and including the run's first space
        parts.append(stripped[done:keep])
        kept.extend(offsets[left + done : left + keep])
        done = run.end()
    parts.append(stripped[done:])
    kept.extend(offsets[left + done : left + len(stripped)])
    return "".join(parts), kept


def _repair(line: str) -> str:
    """Swap look-alike Cyrillic/Greek letters for Latin ones inside otherwise-Latin words."""
    if not _CONFUSABLE.search(line) or not _LATIN.search(line):
        return line
    words = list(_WORD.finditer(line))
    fixed = list(line)
    for k, match in enumerate(words):
        word = match.group()
        if not _CONFUSABLE.search(word):
            continue
        if _LATIN.search(word):
            if _GREEK_SYMBOL.fullmatch(word):
                continue
        elif not (len(word) == 1 and _CYRILLIC.match(word) and _between_latin(words, k)):
            # A lone Cyrillic "а" between English words is the article "a"; longer all-Cyrillic
            # words ("рус") are real Cyrillic and stay.
            continue
        fixed[match.start() : match.end()] = word.translate(_TWINS)
    return "".join(fixed)


def _between_latin(words: list[re.Match[str]], k: int) -> bool:
    """Whether the words around words[k] are Latin (look-alikes repaired, no other Cyrillic)."""
    neighbours = [words[i].group() for i in (k - 1, k + 1) if 0 <= i < len(words)]
    return bool(neighbours) and all(
        _LATIN.search(word) and not _CYRILLIC_OR_GREEK.search(word.translate(_TWINS))
        for word in neighbours
    )


def _is_chrome(line: str, pipes_are_tables: bool = False) -> bool:
    """Whether a cleaned line is web chrome (ads, share prompts, credits, breadcrumbs, links)."""
    if len(line) > _MAX_CHROME_CHARS or _QUOTE.search(line) or _TABLE_ROW.fullmatch(line):
        return False
    core = line.strip(_EDGES).rstrip(".:!?\u2026").strip(_EDGES)
    if not core:
        return False
    words = len(_WORD_TOKEN.findall(core))
    if words > _MAX_PROMPT_WORDS:
        return False
    if _CHROME_PROMPT.fullmatch(core):
        return True
    if words > _MAX_WORDS:
        return False
    if _CHROME_LINE.fullmatch(core):
        return True
    if _BREADCRUMB.fullmatch(core):
        return not (pipes_are_tables and "|" in core)
    return False
