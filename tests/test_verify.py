"""Checking answers against their passages, quoting them, and the refusal calibration: pure
functions on crafted inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import RagError, confidence, verify
from rag.evaluate import calibrate, curve, decidable
from rag.judge import make_answer, quotes
from rag.lexical import fold, tokenize
from rag.types import Chunk, Hit

LAPPO = (
    "The head of the border committee of Belarus, Anatoly Lappo, claimed that Poland was acting "
    "“provocatively,” and that if any Polish attack takes place against Belarusian border "
    "officials, Belarus will not hold back.\n\n“[If] there will be at least one bullet in our "
    "border guards, the answer will be immediate and cruel,” Lappo said."
)


def hit(text: str, title: str = "Belarus border", n: int = 0, source: str = "a.txt") -> Hit:
    return Hit(Chunk(n, source, title, 100, 100 + len(text), text, original=text), 0.6)


def test_accents_and_case_fold_away() -> None:
    assert fold("Bábich ÉCOLE Straße") == "babich ecole strasse"
    assert tokenize(["Bábich"]) == tokenize(["babich"])


def test_a_number_the_passage_never_states_fails_the_check() -> None:
    check = verify.check("The drills were held across 7 training grounds [1].",
                         "Across how many training grounds?",
                         ["The drills will be held across five training grounds."])  # fmt: skip
    assert not check.ok and check.missing == ("7",)
    assert "7" in check.reason


def test_number_words_and_digits_are_the_same_number() -> None:
    check = verify.check("Across 5 training grounds [1].", "Across how many training grounds?",
                         ["The drills will be held across five training grounds."])  # fmt: skip
    assert check.ok, check.reason


def test_a_name_the_passage_never_states_fails_and_accents_do_not_matter() -> None:
    passage = ["Officials say Dmitry Bábich signed the order in Minsk."]
    assert not verify.check(
        "It was signed by Ivan Petrov [1].", "Who signed the order?", passage
    ).ok
    ok = verify.check(
        "The order was signed by Dmitry Babich [1].", "Who signed the order?", passage
    )
    assert ok.ok, ok.reason


def test_an_answer_that_only_restates_the_question_fails() -> None:
    check = verify.check(
        "The hit game show returned to TV screens last Saturday [1].",
        "Which hit game show returned to TV screens last Saturday?",
        ["The hit game show Blockbusters returned to TV screens last Saturday."],
    )
    assert check.echo and not check.ok


def test_names_from_the_question_need_not_be_in_the_passage_but_are_counted() -> None:
    check = verify.check("He promised an immediate and cruel answer [1].",
                         "What did Lappo threaten in 2023?", ["The answer will be immediate and cruel."])  # fmt: skip
    assert check.ok
    assert set(check.question_missing) == {"lappo", "2023"}
    assert check.coverage < 1.0


def test_local_coverage_is_low_when_the_answer_comes_from_a_sentence_about_something_else() -> None:
    passages = [
        "The Royal Society was founded in 1660 in London. Many years later, in 1847, the "
        "Chemical Society held its first meeting in a coffee house."
    ]
    right = verify.check(
        "It was founded in 1660 [1].", "When was the Royal Society founded?", passages
    )
    wrong = verify.check(
        "It was founded in 1847 [1].", "When was the Royal Society founded?", passages
    )
    assert right.ok and wrong.ok  # both years are in the passage: only the signal tells them apart
    assert right.local > wrong.local


ARMY = (
    "Belarus says it is bound by treaty to defend Russia. “Our 60,000-65,000-strong army will go "
    "to war,” Lukashenko said in an interview with Russian media."
)
TROOPS = "Lukashenko added that “hundreds of thousands” of Russian troops will be mobilized."
HOW_MANY = "How many Russian troops did Lukashenko say would come to defend Belarus?"


def test_a_number_said_of_another_thing_than_the_one_counted_fails() -> None:
    answer = "He said 60,000-65,000 Russian troops would come [1]."
    # Shown alone, the army passage may say troops in other words: not judged.
    assert verify.check(answer, HOW_MANY, [ARMY]).ok
    # Shown beside a passage that counts troops, its number is about something else.
    wrong = verify.check(answer, HOW_MANY, [ARMY], others=[TROOPS])
    assert not wrong.ok
    assert wrong.astray == ("60000", "65000")
    assert "troops" in wrong.reason
    right = verify.check("Hundreds of thousands of Russian troops [1].", HOW_MANY, [TROOPS])
    assert right.ok and not right.astray
    # The thing counted named in the number's own sentence (or the next one) backs it.
    seats = verify.check(
        "It has 2,500 seats [1].",
        "How many seats does the amphitheatre have?",
        ["Woodward Park has an amphitheatre. It has 2,500 seats in all."],
        others=["The park's lake has seats along its shore."],
    )
    assert seats.ok


def test_a_count_said_in_other_words_in_its_own_passage_is_not_judged() -> None:
    # "votes" named only further on in the cited passage itself: the answer may be right.
    check = verify.check(
        "Smith received 5,210 [1].",
        "How many votes did Smith receive?",
        [
            "Smith won with 5,210 ballots cast in his favour. Turnout was low. The count ended "
            "late. Officials said votes from two towns were delayed."
        ],
    )
    assert check.ok


def test_a_count_whose_passage_names_the_thing_counted_is_not_judged() -> None:
    # SQuAD 2.0: "Protestants" in the number's sentence, "Huguenots" two sentences before it;
    # another shown passage counts Huguenots who fled. The cited passage backs its number.
    check = verify.check(
        "Nearly 3,000 Protestants were slaughtered in Toulouse [1].",
        "How many Huguenots were killed in Toulouse?",
        [
            "Catholics killed thousands of Huguenots in Paris. Similar massacres took place in "
            "other towns. The main provincial towns were Aix, Bordeaux and Toulouse. Nearly "
            "3,000 Protestants were slaughtered in Toulouse alone."
        ],
        others=["After this, Huguenots (with estimates ranging from 200,000 to 1,000,000) fled."],
    )
    assert check.ok, check.reason


def test_generic_counts_are_not_judged_by_the_sentence() -> None:
    # "people" is said in too many other words ("officials and experts") to demand it.
    check = verify.check(
        "The meeting had 350 officials and experts [1].",
        "How many people attended the 2003 meeting?",
        ["The 2003 meeting was attended by 350 government officials and experts."],
        others=["Many people came to the opening."],
    )
    assert check.ok


def test_astray_passages_are_the_ones_to_leave_out_when_asking_again() -> None:
    answer = "He said 60,000-65,000 Russian troops would come [2]."
    assert verify.astray_passages(answer, HOW_MANY, [TROOPS, ARMY]) == [1]
    assert verify.astray_passages("Hundreds of thousands [1].", HOW_MANY, [TROOPS, ARMY]) == []
    assert verify.astray_passages(answer, "What did Lukashenko say?", [TROOPS, ARMY]) == []


def test_the_lappo_answer_is_quoted_with_the_cited_words_marked() -> None:
    h = hit(LAPPO)
    (quote, *_) = quotes(h, "Lappo said the answer will be immediate and cruel [1].")
    assert "immediate and cruel" in quote.text
    assert LAPPO[quote.start - 100 : quote.end - 100] == quote.text
    marked = {quote.text[a:b] for a, b in quote.marks}
    assert {"immediate", "cruel"} <= marked


def test_an_answer_whose_name_is_in_no_cited_passage_is_withheld_with_the_reason() -> None:
    hits = [hit(LAPPO)]
    answer = make_answer("Lukashenko threatened Poland with sanctions [1].", hits, "What did Lappo threaten?", {})  # fmt: skip
    assert answer.refused and answer.outcome == "withheld" and answer.citations == ()
    assert "lukashenko" in answer.reason and answer.draft.startswith("Lukashenko")


def test_an_uncited_answer_gets_the_citation_of_the_passage_that_backs_it() -> None:
    hits = [hit("Heavy rain is expected on the coast.", "Weather", 0, "w.txt"), hit(LAPPO, n=1)]
    answer = make_answer("Lappo said the answer will be immediate and cruel.", hits,
                         "What did Lappo threaten?", {})  # fmt: skip
    assert answer.outcome == "answered" and answer.supported
    assert [c.source for c in answer.citations] == ["a.txt"]
    assert answer.text.endswith("[1].")
    assert answer.citations[0].quotes


def test_an_uncited_answer_that_no_passage_backs_is_withheld() -> None:
    hits = [hit(LAPPO)]
    answer = make_answer(
        "Minsk has two million people.", hits, "How many people live in Minsk?", {}
    )
    assert answer.outcome == "withheld" and answer.citations == ()


def calibration(threshold: float = 0.5) -> confidence.Calibration:
    rows = [({"coverage": c, "support": 1.0}, c > 0.5) for c in [i / 20 for i in range(21)]]
    rows += [({"coverage": 0.9, "support": 1.0}, False), ({"coverage": 0.2, "support": 1.0}, True)]
    return confidence.calibration(rows, threshold, {"model": "m"}, ("coverage", "support"))


def test_the_calibration_learns_which_signal_tells_right_from_wrong() -> None:
    cal = calibration()
    assert cal.weights[0] > 0
    assert cal.probability({"coverage": 0.95, "support": 1.0}) > 0.8
    assert cal.probability({"coverage": 0.05, "support": 1.0}) < 0.2
    # A signal that could not be measured takes its neutral value instead of failing.
    assert 0.0 <= cal.probability({}) <= 1.0


def test_a_calibration_survives_a_save_and_load(tmp_path: Path) -> None:
    cal = calibration(0.3)
    cal.save(tmp_path / "c.json")
    assert confidence.load(tmp_path / "c.json") == cal
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(RagError, match="rag calibrate"):
        confidence.load(tmp_path / "bad.json")


def test_an_answer_below_the_threshold_is_withheld_and_above_it_is_shown() -> None:
    hits = [hit(LAPPO)]
    raw = "Lappo said the answer will be immediate and cruel [1]."
    strict = make_answer(
        raw, hits, "What did Lappo threaten?", {}, signals={}, calibration=calibration(0.9999)
    )
    lenient = make_answer(
        raw, hits, "What did Lappo threaten?", {}, signals={}, calibration=calibration(0.0)
    )
    assert strict.outcome == "withheld" and "confidence" in strict.reason
    assert lenient.outcome == "answered" and lenient.confidence is not None


def report_rows() -> list[dict]:
    rows = []
    for i in range(40):
        answerable = i % 2 == 0
        coverage = (0.6 + i / 200) if answerable else (0.2 + i / 200)
        rows.append({
            "id": str(i), "answerable": answerable, "outcome": "answered", "confidence": 0.5,
            "draft_correct": answerable, "signals": {"coverage": coverage, "support": 1.0},
        })  # fmt: skip
    rows.append({"id": "r", "answerable": False, "outcome": "refused", "draft_correct": True,
                 "signals": {}})  # fmt: skip
    return rows


def test_the_shipped_calibration_loads_and_names_its_model_and_signals() -> None:
    cal = confidence.load()
    assert cal.fitted_on["model"] == "qwen2.5-coder-1.5b"
    assert set(cal.features) <= set(confidence.FEATURES) and 0.0 < cal.threshold < 1.0


def test_max_loss_picks_the_highest_threshold_that_keeps_answerable_accuracy(
    tmp_path: Path,
) -> None:
    report = {"dataset": {"name": "t"}, "settings": {"part": [1, 2], "model": "m"},
              "questions": report_rows()}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    _, cal = calibrate([path], features=("coverage", "support"), max_loss=0.0)
    at, above = curve(report_rows(), cal, [cal.threshold, cal.threshold + 0.025])
    assert at["answerable_correct"] == 1.0 and above["answerable_correct"] < 1.0


def test_the_trade_off_curve_moves_from_answering_all_to_refusing_all() -> None:
    rows = report_rows()
    assert sum(decidable(r) for r in rows) == 40
    cal = calibration()
    points = curve(rows, cal, [0.0, 1.0])
    assert points[0]["answerable_correct"] == 1.0 and points[0]["unanswerable_refused"] == 1 / 21
    assert points[1]["answerable_correct"] == 0.0 and points[1]["unanswerable_refused"] == 1.0


def test_rag_calibrate_picks_the_lowest_threshold_that_refuses_enough(tmp_path: Path) -> None:
    report = {"dataset": {"name": "t"}, "settings": {"part": [1, 2], "model": "m"},
              "questions": report_rows()}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    text, cal = calibrate([path], refusal=0.75, features=("coverage", "support"))
    assert "<- chosen" in text and cal.fitted_on["model"] == "m"
    points = curve(report_rows(), cal, [cal.threshold])
    assert points[0]["unanswerable_refused"] >= 0.75
    assert points[0]["answerable_correct"] > 0.5
