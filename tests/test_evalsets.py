"""Reading question files in our .jsonl, SQuAD v1.1 and BEIR formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.evalsets import detect, load

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"  # ../shared/eval beside the checkout
needs_eval_data = pytest.mark.skipif(not EVAL.is_dir(), reason="no shared eval data here")

QUESTIONS = [
    {"id": "q1", "question": "Where?", "history": [], "gold_doc": "a.txt", "must": [["Paris"]]},
    {
        "id": "q2",
        "question": "And when did he go?",
        "history": [
            {"role": "user", "content": "Who went to Paris?"},
            {"role": "assistant", "content": "Ann."},
        ],
        "gold_doc": "b.txt",
        "must": [["May", "5th month"], ["1990"]],
    },
    {"id": "q3", "question": "Capital of Mars?", "history": [], "gold_doc": None, "must": []},
]

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Cats",
            "paragraphs": [
                {
                    "context": "Cats sleep a lot.",
                    "qas": [
                        {
                            "id": "s1",
                            "question": "What do cats do a lot?",
                            "answers": [
                                {"answer_start": 5, "text": "sleep"},
                                {"answer_start": 5, "text": "sleep a lot"},
                            ],
                        }
                    ],
                },
                {"context": "No questions here.", "qas": []},
            ],
        },
        {
            "title": "Dogs",
            "paragraphs": [
                {
                    "context": "Dogs bark.",
                    "qas": [
                        {
                            "id": "s2",
                            "question": "What do dogs do?",
                            "answers": [{"answer_start": 5, "text": "bark"}],
                        }
                    ],
                }
            ],
        },
    ],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_beir(root: Path, qrels: str) -> Path:
    root.mkdir()
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "One", "text": "first document"},
            {"_id": "d2", "title": "", "text": "second document"},
            {"_id": "d3", "title": "Three", "text": ""},  # empty documents exist (Cranfield)
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "1", "text": "first query"},
            {"_id": "2", "text": "unjudged query"},
            {"_id": "3", "text": "third query"},
        ],
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


QRELS = "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t1\n3\td2\t4\n3\td1\t0\n"


def test_questions_file_reads_gold_documents_history_and_keyword_groups(tmp_path):
    path = write_jsonl(tmp_path / "dev.jsonl", QUESTIONS)
    assert detect(path) == "questions"
    evalset = load(path)
    assert (evalset.kind, evalset.name, evalset.documents) == ("questions", "dev", ())
    q1, q2, q3 = evalset.questions
    assert q1.relevant == {"a.txt": 1.0} and q1.answerable and q1.must == (("Paris",),)
    assert q2.history[0] == {"role": "user", "content": "Who went to Paris?"}
    assert q2.must == (("May", "5th month"), ("1990",))
    assert q3.relevant == {} and not q3.answerable and q3.must == ()


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"id": "x", "gold_doc": null}', "'question'"),
        ('{"id": "x", "question": "?", "must": []}', "'gold_doc'"),
        ('{"id": "x", "question": "?", "gold_doc": null, "must": ["Paris"]}', "'must'"),
        ('{"id": "x", "question": "?", "gold_doc": null, "history": [{"role": "bot"}]}', "history"),
        ('{"id": "q1", "question": "?", "gold_doc": null}', "used twice"),
    ],
)
def test_a_malformed_line_is_named_by_its_number(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "dev.jsonl", QUESTIONS[:1])
    with path.open("a", encoding="utf-8") as f:
        f.write("\n" + bad_row + "\n")  # a blank line 2, the bad row on line 3
    with pytest.raises(RagError, match=rf"line 3: .*{message}"):
        load(path)


def test_squad_paragraphs_become_documents_named_like_files(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    assert detect(path) == "squad"
    evalset = load(path)
    assert evalset.kind == "squad"
    assert evalset.documents == (
        ("000_000.txt", "Cats", "Cats sleep a lot."),
        ("000_001.txt", "Cats", "No questions here."),
        ("001_000.txt", "Dogs", "Dogs bark."),
    )
    s1, s2 = evalset.questions
    assert (s1.id, s1.relevant, s1.answers) == (
        "s1",
        {"000_000.txt": 1.0},
        ("sleep", "sleep a lot"),
    )
    assert (s2.relevant, s2.answers, s2.answerable) == ({"001_000.txt": 1.0}, ("bark",), True)


def test_squad_sample_keeps_every_paragraph_as_a_distractor(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    evalset = load(path, limit=1)
    assert len(evalset.questions) == 1
    assert len(evalset.documents) == 3


def test_squad_question_without_answers_is_refused(tmp_path):
    broken = json.loads(json.dumps(SQUAD))
    broken["data"][1]["paragraphs"][0]["qas"][0]["answers"] = []
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(RagError, match=r"data\[1\]\.paragraphs\[0\]\.qas\[0\]: .*no answers"):
        load(path)


def test_beir_folder_keeps_judged_queries_with_graded_relevance(tmp_path):
    root = write_beir(tmp_path / "tiny", QRELS)
    assert detect(root) == "beir"
    evalset = load(root)
    assert (evalset.kind, evalset.name) == ("beir", "tiny")
    assert evalset.documents == (
        ("d1", "One", "first document"),
        ("d2", "", "second document"),
        ("d3", "Three", ""),
    )
    # query 2 has no judgements; the grade-0 row of query 3 is "not relevant"
    assert [(q.id, q.question, q.relevant) for q in evalset.questions] == [
        ("1", "first query", {"d1": 2.0, "d2": 1.0}),
        ("3", "third query", {"d2": 4.0}),
    ]


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        (QRELS + "1\td3\n", "line 6: expected query-id"),
        (QRELS + "1\td3\thigh\n", "line 6: the score 'high'"),
        (QRELS + "9\td3\t1\n", "line 6: the query '9'"),
    ],
)
def test_a_malformed_qrels_line_is_named_by_its_number(tmp_path, qrels, message):
    root = write_beir(tmp_path / "tiny", qrels)
    with pytest.raises(RagError, match=message):
        load(root)


def test_beir_folder_without_qrels_says_what_is_missing(tmp_path):
    root = write_beir(tmp_path / "tiny", QRELS)
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(RagError, match=r"qrels/test\.tsv"):
        load(root)


def test_unknown_formats_name_the_expected_ones(tmp_path):
    not_squad = tmp_path / "other.json"
    not_squad.write_text('{"rows": []}', encoding="utf-8")
    no_question = write_jsonl(tmp_path / "other.jsonl", [{"text": "hello"}])
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    for path in (not_squad, no_question, text, tmp_path, tmp_path / "missing.jsonl"):
        with pytest.raises(RagError, match="Expected a .jsonl of questions.*SQuAD.*BEIR"):
            detect(path)


def test_limit_draws_the_same_sample_for_the_same_seed_in_file_order(tmp_path):
    rows = [{"id": f"q{i}", "question": f"Question {i}?", "gold_doc": None} for i in range(50)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    first = [q.id for q in load(path, limit=10, seed=3).questions]
    assert first == [q.id for q in load(path, limit=10, seed=3).questions]
    assert first != [q.id for q in load(path, limit=10, seed=4).questions]
    assert first == sorted(first, key=lambda qid: int(qid[1:]))
    assert len(load(path, limit=500).questions) == 50
    with pytest.raises(RagError, match="at least 1"):
        load(path, limit=0)


@needs_eval_data
def test_shared_seed_questions_load():
    evalset = load(EVAL / "seed_dev.jsonl")
    assert evalset.kind == "questions" and len(evalset.questions) > 0
    assert any(not q.answerable for q in evalset.questions)
    assert any(q.history for q in evalset.questions)


@needs_eval_data
def test_shared_xquad_loads():
    evalset = load(EVAL / "xquad_en_dev.json")
    assert evalset.kind == "squad"
    assert len(evalset.questions) > 0 and len(evalset.documents) > 0
    doc_ids = {doc for doc, _, _ in evalset.documents}
    assert all(set(q.relevant) <= doc_ids and q.answers for q in evalset.questions)


@needs_eval_data
def test_shared_cranfield_loads_with_graded_relevance():
    evalset = load(EVAL / "cranfield")
    assert evalset.kind == "beir"
    assert len(evalset.questions) > 0 and len(evalset.documents) > 0
    grades = {g for q in evalset.questions for g in q.relevant.values()}
    assert len(grades) > 1 and min(grades) > 0
    sample = [q.id for q in load(EVAL / "cranfield", limit=20, seed=1).questions]
    assert sample == [q.id for q in load(EVAL / "cranfield", limit=20, seed=1).questions]
    assert len(sample) == 20
