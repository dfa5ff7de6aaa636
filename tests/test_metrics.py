"""Evaluation scores on hand-computed cases."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rag.metrics import (
    citation_precision,
    exact_match,
    f1,
    hit_at,
    keyword_groups_ok,
    mean,
    ndcg_at,
    normalize_answer,
    percentile,
    recall_at,
    reciprocal_rank,
)

GRADED = {"a": 2.0, "c": 1.0}


def test_ndcg_uses_graded_gains_and_the_ideal_order():
    # DCG  = (2^2-1)/log2(3) + (2^1-1)/log2(4) = 3/1.58496 + 1/2 = 2.39279
    # IDCG = (2^2-1)/log2(2) + (2^1-1)/log2(3) = 3/1 + 1/1.58496 = 3.63093
    # nDCG = 2.39279 / 3.63093 = 0.65900
    assert ndcg_at(["b", "a", "c"], GRADED) == pytest.approx(0.65900, abs=1e-5)
    assert ndcg_at(["a", "c", "b"], GRADED) == pytest.approx(1.0)


def test_ndcg_cuts_both_rankings_at_k():
    # DCG@2 = 3/log2(3) = 1.89279 (c at rank 3 is cut); IDCG@2 = 3.63093; nDCG@2 = 0.52130
    assert ndcg_at(["b", "a", "c"], GRADED, k=2) == pytest.approx(0.52130, abs=1e-5)


def test_chunks_of_one_document_count_once_at_their_first_rank():
    ranked = ["b", "b", "a", "a", "c"]  # deduplicated: [b, a, c]
    assert ndcg_at(ranked, GRADED) == pytest.approx(0.65900, abs=1e-5)
    assert reciprocal_rank(ranked, GRADED) == 0.5  # a is the 2nd distinct document
    assert hit_at(ranked, GRADED, 1) == 0.0
    assert hit_at(ranked, GRADED, 2) == 1.0
    assert recall_at(ranked, GRADED, 2) == 0.5  # [b, a]: 1 of the 2 relevant
    assert recall_at(ranked, GRADED, 3) == 1.0


def test_reciprocal_rank_only_looks_at_the_top_k():
    ranked = [f"x{i}" for i in range(10)] + ["a"]  # a is 11th
    assert reciprocal_rank(ranked, GRADED) == 0.0
    assert reciprocal_rank(ranked, GRADED, k=11) == pytest.approx(1 / 11)
    assert reciprocal_rank(["c", "a"], GRADED) == 1.0


def test_no_relevant_documents_scores_zero():
    for relevant in ({}, {"a": 0.0}):  # a grade of 0 means "not relevant", as in BEIR
        assert ndcg_at(["a", "b"], relevant) == 0.0
        assert recall_at(["a", "b"], relevant, 5) == 0.0
        assert hit_at(["a", "b"], relevant, 5) == 0.0
        assert reciprocal_rank(["a", "b"], relevant) == 0.0
    assert ndcg_at([], GRADED) == 0.0


def test_k_below_one_is_a_programming_error():
    with pytest.raises(ValueError):
        hit_at(["a"], GRADED, 0)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The  Cat!", "cat"),
        ("an apple, a pear", "apple pear"),
        ("Theater", "theater"),  # articles are whole words only
        ("the-cat", "thecat"),  # punctuation goes before articles, as in the official script
        ("U.S.A.", "usa"),
        ("  don't\tstop\n", "dont stop"),
    ],
)
def test_normalize_answer_follows_squad(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_takes_the_best_gold():
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("Denver Broncos", ["Broncos", "the Denver Broncos."]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_f1_counts_shared_tokens():
    # "cat sat on mat" vs "cat on mat": 3 shared; P = 3/4, R = 3/3; F1 = 2*0.75*1/1.75 = 0.85714
    assert f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(0.85714, abs=1e-5)
    # vs "Broncos": P = 1/2, R = 1, F1 = 0.66667; vs "Denver Broncos": 1.0; the max wins
    assert f1("Denver Broncos", ["Broncos"]) == pytest.approx(2 / 3)
    assert f1("Denver Broncos", ["Broncos", "Denver Broncos"]) == 1.0
    # repeated tokens count as often as both sides have them: "1 1 2" vs "1 2 2": 2 shared
    assert f1("1 1 2", ["1 2 2"]) == pytest.approx(2 / 3)
    assert f1("Paris", ["London"]) == 0.0
    assert f1("x", []) == 0.0


def test_answers_made_only_of_articles_match_exactly_but_share_no_tokens():
    # The official script: both normalize to "", so EM is 1 while F1 has no common token.
    assert exact_match("a", ["the"]) == 1.0
    assert f1("a", ["the"]) == 0.0


def test_keyword_groups_need_one_alternative_from_every_group():
    must = [["Kaliningrad"], ["40", "forty"]]
    assert keyword_groups_ok("About FORTY km from the kaliningrad border.", must)
    assert not keyword_groups_ok("Near the Kaliningrad border.", must)
    assert keyword_groups_ok("Anything at all.", [])


def test_citation_precision_counts_each_citation():
    assert citation_precision(["a", "a", "b"], {"a"}) == pytest.approx(2 / 3)
    assert citation_precision(["x"], set()) == 0.0  # citing for an unanswerable question
    assert citation_precision([], {"a"}) is None


def test_mean_skips_missing_values():
    assert mean([1.0, None, 2.0]) == 1.5
    assert mean([]) is None
    assert mean([None]) is None


def test_percentile_matches_numpy():
    rng = random.Random(7)
    for n in (1, 2, 5, 10, 101):
        xs = [rng.uniform(0, 100) for _ in range(n)]
        for p in (0, 12.5, 50, 90, 95, 99, 100):
            assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))
    assert percentile([3, 1, 2, 4], 50) == 2.5  # unsorted input; halfway between 2 and 3
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)
