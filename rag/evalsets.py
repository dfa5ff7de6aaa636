"""Reading evaluation question files: our questions .jsonl, SQuAD v1.1 .json, BEIR folders."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import RagError

FORMATS = (
    'a .jsonl of questions (one {"question": ...} object a line), '
    'a SQuAD v1.1 .json (top-level "data" with "paragraphs"), '
    "or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)"
)
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class EvalQuestion:
    """One question to ask, with what a good system should find and say."""

    id: str
    question: str
    history: tuple[dict, ...] = ()  # earlier turns: {"role": "user"|"assistant", "content": ...}
    relevant: dict[str, float] = field(default_factory=dict)  # doc id -> grade > 0
    answers: tuple[str, ...] = ()  # SQuAD gold answers
    must: tuple[tuple[str, ...], ...] = ()  # every group needs one alternative in the answer
    answerable: bool = True  # False: the right answer says the documents do not hold it


@dataclass(frozen=True)
class EvalSet:
    """The questions of one file and, for squad and beir, the documents they are asked over."""

    kind: str  # "questions" (asked of an existing index), "squad" or "beir"
    name: str
    questions: tuple[EvalQuestion, ...]
    documents: tuple[tuple[str, str, str], ...] = ()  # (doc id, title, text)


def detect(path: str | Path) -> str:
    """The format of a question file or folder: "questions", "squad" or "beir"."""
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
            return "beir"
        raise _unknown(path, "the folder has no corpus.jsonl and queries.jsonl")
    if not path.is_file():
        raise RagError(f"{path} does not exist. Expected {FORMATS}.")
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        articles = data.get("data") if isinstance(data, dict) else None
        if isinstance(articles, list) and any(
            isinstance(a, dict) and "paragraphs" in a for a in articles
        ):
            return "squad"
        raise _unknown(path, 'it has no top-level "data" list of articles with "paragraphs"')
    if path.suffix.lower() == ".jsonl":
        first = next(_jsonl(path), None)
        if first is not None and "question" in first[1]:
            return "questions"
        raise _unknown(path, 'its first row has no "question"')
    raise _unknown(path, "it is neither a .jsonl, a .json nor a folder")


def in_part(question_id: str, part: tuple[int, int]) -> bool:
    """Whether a question falls in part I of N: parts are disjoint, fixed by the id alone."""
    i, n = part
    digest = hashlib.sha256(str(question_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n == i - 1


def load(
    path: str | Path,
    limit: int | None = None,
    seed: int = 0,
    part: tuple[int, int] | None = None,
) -> EvalSet:
    """Read an evaluation set, keeping a reproducible random sample of `limit` questions.

    `part` (I, N) keeps only part I of N disjoint parts of the questions first, so that a
    sample to tune on and a sample to report on never share a question.
    Sampling keeps every document of squad and beir sets: the others act as distractors.
    """
    path = Path(path)
    kind = detect(path)
    if kind == "questions":
        questions, documents = _load_questions(path), ()
    elif kind == "squad":
        questions, documents = _load_squad(path)
    else:
        questions, documents = _load_beir(path)
    if not questions:
        raise RagError(f"{path} holds no questions. Expected {FORMATS}.")
    if part is not None:
        questions = [q for q in questions if in_part(q.id, part)]
    if limit is not None:
        if limit < 1:
            raise RagError(f"The question limit must be at least 1, got {limit}.")
        if limit < len(questions):
            keep = sorted(random.Random(seed).sample(range(len(questions)), limit))
            questions = [questions[i] for i in keep]
    name = path.name if path.is_dir() else path.stem
    return EvalSet(kind, name, tuple(questions), tuple(documents))


def _unknown(path: Path, why: str) -> RagError:
    return RagError(f"Cannot read {path} as questions: {why}. Expected {FORMATS}.")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise RagError(f"{path}, line {e.lineno}: invalid JSON ({e.msg}).") from e
    except UnicodeDecodeError as e:
        raise RagError(f"{path} is not UTF-8 text. Expected {FORMATS}.") from e


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line."""
    try:
        with path.open(encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RagError(f"{path}, line {number}: invalid JSON ({e.msg}).") from e
                if not isinstance(row, dict):
                    raise RagError(f"{path}, line {number}: expected a JSON object.")
                yield number, row
    except UnicodeDecodeError as e:
        raise RagError(f"{path} is not UTF-8 text.") from e


def _text(row: dict, key: str, where: str, *, blank: bool = False) -> str:
    """A string field; with `blank`, a missing or empty value is allowed and read as ""."""
    value = row.get(key)
    if value is None and blank:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids
    if not isinstance(value, str) or (not blank and not value.strip()):
        raise RagError(f"{where}: {key!r} must be a non-empty string.")
    return value


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise RagError(f"{where}: {key!r} must be a list of non-empty strings.")
    return tuple(value)


def _load_questions(path: Path) -> list[EvalQuestion]:
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for number, row in _jsonl(path):
        where = f"{path}, line {number}"
        question = _text(row, "question", where)
        qid = _text(row, "id", where) if "id" in row else f"line{number}"
        if qid in seen:
            raise RagError(f"{where}: the id {qid!r} is used twice.")
        seen.add(qid)
        history = row.get("history") or []
        if not isinstance(history, list) or not all(
            isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str)
            for t in history
        ):
            raise RagError(
                f"{where}: 'history' must be a list of "
                '{"role": "user" or "assistant", "content": "..."} objects.'
            )
        # A missing gold_doc must not silently turn a question into an unanswerable one.
        gold = row.get("gold_doc", "")
        if gold is not None and (not isinstance(gold, str) or not gold.strip()):
            raise RagError(
                f"{where}: 'gold_doc' must be the file name holding the answer, "
                "or null when no document does."
            )
        must = row.get("must") or []
        if not isinstance(must, list) or not all(isinstance(g, list) and g for g in must):
            raise RagError(f"{where}: 'must' must be a list of non-empty lists of strings.")
        questions.append(
            EvalQuestion(
                id=qid,
                question=question,
                history=tuple(dict(t) for t in history),
                relevant={gold: 1.0} if gold is not None else {},
                answers=_strings(row.get("answers") or [], "answers", where),
                must=tuple(_strings(group, "must", where) for group in must),
                answerable=gold is not None,
            )
        )
    return questions


def _load_squad(path: Path) -> tuple[list[EvalQuestion], list[tuple[str, str, str]]]:
    articles = _read_json(path)["data"]
    questions: list[EvalQuestion] = []
    documents: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for a, article in enumerate(articles):
        where = f"{path}: data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise RagError(f"{where}: expected an article with a 'paragraphs' list.")
        title = _text(article, "title", where, blank=True)
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise RagError(f"{where}: expected a paragraph with 'context' and a 'qas' list.")
            doc = f"{a:03d}_{p:03d}.txt"  # looks like a file name, as sources in an index do
            documents.append((doc, title, _text(paragraph, "context", where)))
            for q, qa in enumerate(paragraph["qas"]):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict):
                    raise RagError(f"{where}: expected a question object.")
                qid = _text(qa, "id", where)
                if qid in seen:
                    raise RagError(f"{where}: the id {qid!r} is used twice.")
                seen.add(qid)
                impossible = bool(qa.get("is_impossible"))  # SQuAD 2.0 files
                answers = qa.get("answers")
                if not isinstance(answers, list) or not all(
                    isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers
                ):
                    raise RagError(f"{where}: 'answers' must be a list of {{\"text\": ...}}.")
                if not answers and not impossible:
                    raise RagError(f"{where}: the question has no answers.")
                questions.append(
                    EvalQuestion(
                        id=qid,
                        question=_text(qa, "question", where),
                        relevant={} if impossible else {doc: 1.0},
                        answers=tuple(x["text"] for x in answers),
                        answerable=not impossible,
                    )
                )
    return questions, documents


def _load_beir(path: Path) -> tuple[list[EvalQuestion], list[tuple[str, str, str]]]:
    documents: list[tuple[str, str, str]] = []
    doc_ids: set[str] = set()
    for number, row in _jsonl(path / "corpus.jsonl"):
        where = f"{path / 'corpus.jsonl'}, line {number}"
        doc = _text(row, "_id", where)
        if doc in doc_ids:
            raise RagError(f"{where}: the document id {doc!r} is used twice.")
        doc_ids.add(doc)
        documents.append(
            # Some corpora hold empty documents (Cranfield 471 and 995); keep them, as judged.
            (doc, _text(row, "title", where, blank=True), _text(row, "text", where, blank=True))
        )
    queries: dict[str, str] = {}
    for number, row in _jsonl(path / "queries.jsonl"):
        where = f"{path / 'queries.jsonl'}, line {number}"
        queries[_text(row, "_id", where)] = _text(row, "text", where)
    qrels = _read_qrels(path / "qrels" / "test.tsv", queries)
    questions = [
        EvalQuestion(id=qid, question=text, relevant=qrels[qid])
        for qid, text in queries.items()
        if qrels.get(qid)
    ]
    return questions, documents


def _read_qrels(path: Path, queries: dict[str, str]) -> dict[str, dict[str, float]]:
    """query id -> {doc id: grade > 0}. Judged documents missing from the corpus still count."""
    if not path.is_file():
        raise RagError(f"{path} does not exist: a BEIR folder needs qrels/test.tsv.")
    qrels: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip() or (number == 1 and fields[0] == "query-id"):
                continue
            where = f"{path}, line {number}"
            if len(fields) != 3:
                raise RagError(
                    f"{where}: expected query-id, corpus-id and score separated by tabs."
                )
            qid, doc, score = (f.strip() for f in fields)
            try:
                grade = float(score)
            except ValueError:
                raise RagError(f"{where}: the score {score!r} is not a number.") from None
            if qid not in queries:
                raise RagError(f"{where}: the query {qid!r} is not in queries.jsonl.")
            if grade > 0:
                qrels.setdefault(qid, {})[doc] = grade
    return qrels
