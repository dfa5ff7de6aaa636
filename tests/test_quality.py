"""The quality gate: the default answer model (the one `make chat` uses) over the seeds must
answer the development questions right, cite the article that holds each answer, and refuse
the questions the articles cannot answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag import Answer, Config, Engine
from rag.clean import HOMOGLYPHS
from rag.evalsets import load
from rag.evaluate import _judge

ROOT = Path(__file__).resolve().parent.parent
SEED_DEV = ROOT.parent / "shared" / "eval" / "seed_dev.jsonl"
LAPPO = "004_54fdbde5d22b5a7d.txt"

pytestmark = pytest.mark.quality


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path) -> Engine:
    """The shipped defaults (answer model, k, evidence, calibration) over a fresh seeds index."""
    config = Config.load(index_dir=tmp_path_factory.mktemp("quality-index"))
    assert config.model == "qwen2.5-coder-1.5b"
    engine = Engine(config)
    engine.build([seeds_dir])
    return engine


@pytest.fixture(scope="module")
def seed_answers(engine: Engine, artifacts_dir: Path) -> list[tuple[object, Answer]]:
    if not SEED_DEV.is_file():
        pytest.fail(f"{SEED_DEV} is missing: the development questions come with shared/eval")
    questions = load(SEED_DEV).questions
    out = [(q, engine.answer(q.question, list(q.history))) for q in questions]
    (artifacts_dir / "quality-seed-dev.json").write_text(
        json.dumps(
            [{"id": q.id, **a.to_dict(), "passages": None} for q, a in out],
            ensure_ascii=False,
            indent=1,
        ),
        encoding="utf-8",
    )
    return out


def assert_cited(answer: Answer) -> None:
    """A shown answer cites passages, every citation is marked in its text and quotes the
    sentence that backs it."""
    assert answer.outcome == "answered" and answer.supported, answer.reason
    assert answer.citations, f"an answer without a citation was shown: {answer.text!r}"
    for c in answer.citations:
        assert f"[{c.number}]" in answer.text, answer.text
        assert c.quotes, f"citation [{c.number}] quotes nothing"
        original = (ROOT / "seeds" / c.source).read_text(encoding="utf-8")
        for quote in c.quotes:
            # The quote is the cleaned sentence (look-alike letters repaired); its span points
            # at the same words in the file as written.
            written = original[quote.start : quote.end].translate(str.maketrans(HOMOGLYPHS))
            assert " ".join(written.split()) == " ".join(quote.text.split())


def test_the_seed_questions_are_answered_right_and_cite_the_article_that_holds_them(
    seed_answers: list,
) -> None:
    answerable = [(q, a) for q, a in seed_answers if q.answerable]
    right = [(q, a) for q, a in answerable if _judge(a.text, a.refused, q)]
    wrong = {q.id: a.text or a.reason for q, a in answerable if (q, a) not in right}
    assert len(right) >= len(answerable) - 1, f"{len(right)}/{len(answerable)} right; {wrong}"
    for q, a in right:
        assert_cited(a)
        assert {c.source for c in a.citations} <= set(q.relevant), (q.id, a.text)


def test_the_questions_the_seeds_cannot_answer_are_refused(seed_answers: list) -> None:
    unanswerable = [(q, a) for q, a in seed_answers if not q.answerable]
    assert len(unanswerable) >= 2
    for q, a in unanswerable:
        assert a.refused and not a.citations, (q.id, a.text)
        assert a.text == "The documents don't say."


def test_lappo_threatened_an_immediate_and_cruel_answer(engine: Engine) -> None:
    answer = engine.answer("What did Lappo threaten?")
    assert "immediate and cruel" in answer.text, answer.text
    assert_cited(answer)
    assert [c.source for c in answer.citations] == [LAPPO]
    marked = {q.text[a:b].lower() for c in answer.citations for q in c.quotes for a, b in q.marks}
    assert {"immediate", "cruel"} <= marked


def test_the_model_itself_refuses_a_question_whose_passages_do_not_answer_it(
    engine: Engine,
) -> None:
    # Retrieval finds passages about Belarus close enough to ask the model (the score
    # threshold lets them through), and the model itself says the documents don't say.
    question = "What kind of weather is common in Belarus in the fall?"
    hits = engine.search(question)
    assert max(h.score for h in hits) >= engine.config.min_score
    answer = engine.answer(question)
    assert answer.refused and answer.outcome == "refused", (answer.outcome, answer.draft)
    assert answer.reason == "the answer model found no answer in the passages"
    assert re.search(r"documents? (?:do not|don't) say", answer.draft, re.I), answer.draft
