"""Turning the model's text into an `Answer`: citations checked and renumbered, the answer
checked against the passages it cites, quoted from them, and shown only when it holds."""

from __future__ import annotations

import re
from collections.abc import Container, Sequence

from . import cite, lexical, verify
from .clean import HOMOGLYPHS
from .confidence import Calibration
from .types import Answer, Citation, Hit, Quote

_LATIN = str.maketrans(HOMOGLYPHS)
strip_citations = verify.strip_citations


def refusal(question: str, reason: str, timings: dict, outcome: str = "refused", **more) -> Answer:
    """The refusal Answer: the fixed sentence, no citation."""
    return Answer(
        cite.REFUSAL,
        (),
        question,
        supported=False,
        refused=True,
        timings=timings,
        outcome=outcome,
        reason=reason,
        **more,
    )


def make_answer(
    raw: str,
    hits: Sequence[Hit],
    question: str,
    timings: dict,
    known: Container[str] = (),
    shown: Sequence[str] | None = None,
    signals: dict | None = None,
    calibration: Calibration | None = None,
) -> Answer:
    """The Answer for the model's text `raw` over the numbered passages `hits`.

    `shown` are the texts the model was given for each passage (its evidence; the passages'
    whole text if None): the answer is checked against what it could read. `signals` are the
    retrieval and model measurements the `calibration` weighs with the check's own; without a
    calibration only the check decides.
    """
    shown = list(shown) if shown is not None else [h.chunk.text for h in hits]
    signals = dict(signals or {})
    cited = cite.parse(raw.strip(), len(hits))
    bare = strip_citations(cited.text).strip()
    more = {"draft": raw.strip(), "signals": signals, "passages": tuple(hits)}
    # A refusal is an answer that says the documents don't say, and cites nothing else: a cited
    # answer that only hedges one detail ("they don't say when, but ... [1]") stays an answer.
    if not bare or (cite.is_refusal(bare) and (not cited.used or len(bare) <= 80)):
        return refusal(
            question, "the answer model found no answer in the passages", timings, **more
        )
    unknown = off_topic_terms(question, bare, known) if known else set()
    if unknown:
        words = ", ".join(sorted(unknown))
        return refusal(
            question, f"no document mentions {words}", timings, outcome="withheld", **more
        )
    used = list(cited.used)
    text = cited.text
    if not used:
        # Small models often forget the marker: the passage that backs the answer best is
        # cited for it, if one does.
        best = _best_backing(bare, question, hits, shown)
        if best is not None:
            used = [best]
            text = _append_marker(cited.text, 1)
    if not used:
        return refusal(
            question, "the answer cites no passage that backs it", timings, "withheld", **more
        )
    texts = [_with_title(hits[n - 1], shown[n - 1]) for n in used]
    check = verify.check(bare, question, texts, _others(shown, used))
    if not check.ok and not check.echo:
        # Small models also cite the wrong number: a passage they were shown that backs the
        # answer whole is cited instead.
        best = _best_backing(bare, question, hits, shown)
        if best is not None:
            used = [best]
            text = _append_marker(strip_citations(cited.text), 1)
            backing = [_with_title(hits[best - 1], shown[best - 1])]
            check = verify.check(bare, question, backing, _others(shown, used))
    signals.update(
        support=check.support,
        coverage=check.coverage,
        local=check.local,
        question_missing=float(len(check.question_missing)),
        astray=float(len(check.astray)),
        unknown_terms=float(len(unknown_terms(question, known))) if known else None,
    )
    if not check.ok:
        return refusal(question, check.reason, timings, outcome="withheld", **more)
    confidence = calibration.probability(signals) if calibration else None
    more["confidence"] = confidence
    if calibration and confidence is not None and confidence < calibration.threshold:
        reason = f"the answer's confidence {confidence:.2f} is below {calibration.threshold:.2f}"
        if check.question_missing:
            reason += f"; the passages never state {', '.join(check.question_missing)}"
        return refusal(question, reason, timings, outcome="withheld", **more)
    citations = tuple(_citation(new, hits[old - 1], bare) for new, old in enumerate(used, start=1))
    return Answer(text, citations, question, supported=True, timings=timings, **more)


def off_topic_terms(question: str, text: str, known: Container[str]) -> set[str]:
    """Words of the question that the answer repeats but the documents never use.

    Small models answer "How many tanks…?" with a number from a passage about soldiers; the
    question's subject ("tank") then appears in the answer and nowhere in the corpus (`known`
    is the lexical index's vocabulary of stemmed words).
    """
    said = set(lexical.tokenize([text])[0])
    return unknown_terms(question, known) & said


def unknown_terms(question: str, known: Container[str]) -> set[str]:
    """Words of the question that no document ever uses (`known`: the lexical vocabulary): the
    documents may not be about what is asked (or the word is misspelt)."""
    # Short stems ("us" from "U.S.") and numbers are too ambiguous to judge by.
    asked = {t for t in lexical.tokenize([question])[0] if len(t) >= 4 and not t.isdigit()}
    return {t for t in asked if t not in known}


def quotes(hit: Hit, answer: str, limit: int = 2) -> tuple[Quote, ...]:
    """The sentences of a cited passage that hold the answer's words, with those words marked
    and their span in the document's original text."""
    chunk = hit.chunk
    out = []
    for a, b in verify.quote_spans(chunk.text, answer, limit):
        sentence = chunk.text[a:b]
        start, end = _locate(sentence, chunk)
        out.append(Quote(sentence, start, end, tuple(verify.marks(sentence, answer))))
    return tuple(out)


def _citation(number: int, hit: Hit, answer: str) -> Citation:
    chunk = hit.chunk
    return Citation(
        number=number,
        source=chunk.source,
        title=chunk.title,
        start=chunk.start,
        end=chunk.end,
        text=chunk.original or chunk.text,
        page=chunk.page,
        score=hit.score,
        quotes=quotes(hit, answer),
    )


def _with_title(hit: Hit, text: str) -> str:
    # The title is part of what the model read about a passage ("Normans" for "they").
    return f"{hit.chunk.title}\n{text}" if hit.chunk.title else text


def _best_backing(
    answer: str, question: str, hits: Sequence[Hit], shown: Sequence[str]
) -> int | None:
    best, best_support = None, 0.0
    for n, (hit, text) in enumerate(zip(hits, shown), start=1):
        check = verify.check(answer, question, [_with_title(hit, text)], _others(shown, [n]))
        if check.ok and check.support > best_support:
            best, best_support = n, check.support
    return best if best_support >= 0.5 else None


def _others(shown: Sequence[str], used: Sequence[int]) -> list[str]:
    """The texts of the passages shown but not among the (1-based) numbers `used`."""
    return [text for n, text in enumerate(shown, start=1) if n not in used]


def _append_marker(text: str, number: int) -> str:
    text = text.rstrip()
    if text.endswith((".", "!", "?")):
        return f"{text[:-1]} [{number}]{text[-1]}"
    return f"{text} [{number}]"


def _locate(sentence: str, chunk) -> tuple[int, int]:  # noqa: ANN001 - rag.types.Chunk
    """The span in the original document of a sentence of a passage's cleaned text: found in
    the passage as written, spaces and line breaks allowed to differ; else the whole passage."""
    # Cleaning swapped look-alike Cyrillic and Greek letters for Latin ones, one for one, so
    # the original is searched with the same swap and its positions still hold.
    original = (chunk.original or "").translate(_LATIN)
    words = sentence.split()
    if original and words:
        pattern = r"\s+".join(re.escape(w) for w in words)
        m = re.search(pattern, original)
        if m:
            return chunk.start + m.start(), chunk.start + m.end()
    return chunk.start, chunk.end
