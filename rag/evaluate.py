"""Evaluation: ask a question set of the engine and score what it retrieves and answers."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from . import cite, confidence, evalsets, ingest, metrics
from .config import PROJECT_DIR, Config
from .errors import BadQuestion, RagError
from .evalsets import EvalQuestion, EvalSet
from .pipeline import Engine
from .types import Answer, Hit

DEPTH = 10  # retrieval metrics look at the first max(DEPTH, k) passages
# Bumped when the document files written for a squad or beir set change, so that cached
# indexes of the old files are not reused.
DOCUMENTS_VERSION = 1
_CITATION = re.compile(r"\s*\[\d+\]")

# Names of the overall numbers in the printed table, in the order printed.
LABELS = {
    "questions": "questions",
    "retrieval_scored": "questions with a gold document",
    "hit@1": "hit@1",
    "hit@5": "hit@5",
    "hit@10": "hit@10",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
    "search_s_mean": "search seconds per question (mean)",
    "search_s_p95": "search seconds per question (p95)",
    "answered": "questions answered",
    "keyword_accuracy": "keyword accuracy (answerable)",
    "exact_match": "exact match (answerable)",
    "f1": "F1 (answerable)",
    "contains_answer": "answer contains a gold answer",
    "refusal_accuracy": "refusal accuracy (unanswerable)",
    "false_refusal_rate": "false refusal rate (answerable)",
    "citation_precision": "citation precision",
    "unsupported_share": "share flagged unsupported",
    "answer_s_mean": "answer seconds per question (mean)",
    "answer_s_p95": "answer seconds per question (p95)",
}


def run(
    path: str | Path,
    config: Config | None = None,
    retrieval_only: bool = False,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    work_dir: str | Path | None = None,
    part: tuple[int, int] | None = None,
) -> dict:
    """Ask every question of an evaluation set and return the report (JSON-ready).

    Our questions .jsonl is asked of the index at `config.index_dir`; a SQuAD file or BEIR
    folder is written out as documents and indexed in a cache folder under `work_dir` (default:
    the system temp folder), keyed by the documents and the index settings, so runs with another
    retrieval mode, k or answer model reuse it. BEIR sets are retrieval only.
    """
    began = time.perf_counter()
    config = config or Config.load()
    evalset = evalsets.load(path, limit=limit, seed=seed, part=part)
    retrieval_only = retrieval_only or evalset.kind == "beir"
    depth = max(DEPTH, config.k)
    if evalset.kind == "questions":
        engine, doc_of, index = _existing_index(config)
    else:
        engine, doc_of, index = _dataset_index(evalset, config, work_dir, progress)
    # Models load before the clock starts, so that no question is charged for it.
    engine.embedder  # noqa: B018
    if not retrieval_only:
        engine.llm  # noqa: B018
    ready_at = time.perf_counter()

    rows = []
    for q in _bar(evalset.questions, evalset.name, progress):
        rows.append(_ask(engine, q, doc_of, depth, config.k, retrieval_only))
    asked_at = time.perf_counter()

    # The sample's seed is named apart from the answer model's sampling seed (`Config.seed`).
    settings = {"retrieval_only": retrieval_only, "limit": limit, "sample_seed": seed}
    settings["part"] = list(part) if part else None
    settings.update(depth=depth, **_jsonable(asdict(engine.config)))
    if retrieval_only:
        settings["model"] = None  # not loaded
    commit, dirty = _git()
    return {
        "dataset": {
            "name": evalset.name,
            "kind": evalset.kind,
            "path": str(Path(path).resolve()),
            "questions": len(evalset.questions),
            "documents": len(evalset.documents) or None,
        },
        "settings": settings,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "index": index,
        "seconds": {
            "setup": round(ready_at - began, 3),  # reading, indexing, loading models
            "questions": round(asked_at - ready_at, 3),
            "total": round(asked_at - began, 3),
        },
        "overall": _overall(rows, evalset, config.k, retrieval_only),
        "questions": rows,
    }


def format_table(report: dict) -> str:
    """The overall numbers of a report as a plain-text table: metric, value."""
    data, settings = report["dataset"], report["settings"]
    head = f"{data['name']} ({data['kind']}): {data['questions']} questions"
    if data.get("documents"):
        head += f" over {data['documents']} documents"
    about = f"retrieval {settings['retrieval']}, k {settings['k']}"
    about += ", retrieval only" if settings["retrieval_only"] else f", model {settings['model']}"
    about += f"; {report['seconds']['total']:.1f} s (setup {report['seconds']['setup']:.1f} s)"
    rows = [("metric", "value")]
    rows += [(LABELS.get(key, key), _format(value)) for key, value in report["overall"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [head, about, ""]
    lines += [f"{name:<{width}}  {value:>8}" for name, value in rows]
    lines.insert(4, "-" * (width + 10))
    return "\n".join(lines)


# -- the index a set is asked of -----------------------------------------------------------


def _existing_index(config: Config) -> tuple[Engine, Callable[[str], str], dict]:
    """Our questions are asked of an existing index; a passage's doc id is its source file."""
    # As `rag.engine()` does: only the default index over seeds/ is built when missing.
    engine = Engine(config, build_missing=config.index_dir == Config.load().index_dir)
    index = engine.index
    info = {
        "dir": str(config.index_dir),
        "created": index.manifest.get("created"),
        "documents": len(index.manifest.get("documents", {})),
        "passages": index.size,
    }
    return engine, lambda source: source, info


def _dataset_index(
    evalset: EvalSet, config: Config, work_dir: str | Path | None, progress: bool
) -> tuple[Engine, Callable[[str], str], dict]:
    """Write a squad or beir set's documents as files and index them, or reuse the cache."""
    key = hashlib.sha256(
        json.dumps(
            [DOCUMENTS_VERSION, ingest.settings(config), evalset.documents], ensure_ascii=False
        ).encode()
    ).hexdigest()[:16]
    root = Path(work_dir or Path(tempfile.gettempdir()) / "rag-eval").expanduser().resolve()
    folder = root / f"{evalset.name}-{key}"
    docs = folder / "docs"
    names = _write_documents(evalset.documents, docs)
    own = {"index_dir": folder / "index", "corpus": docs}
    if config.store:  # the set gets a Milvus store of its own, never the user's
        from .cluster import milvus

        own["store"] = milvus.beside(config.store, folder / "index.db", f"eval_{key}")
    engine = Engine(config.with_(**own))
    # An incremental build: nothing is embedded when the cached index holds these documents
    # already, but its files are rewritten by the current code (e.g. the lexical index).
    summary = engine.build([docs], progress=ingest.progress_bar() if progress else None)
    info = {
        "dir": str(own.get("store") or folder / "index"),
        "cached": summary.embedded == 0,
        "documents": summary.documents,
        "passages": summary.chunks,
        "embedded": summary.embedded,
        "skipped": [list(s) for s in summary.skipped],
        "build_s": summary.seconds,
    }
    return engine, lambda source: names.get(source, source), info


def _file_name(doc_id: str) -> str:
    if re.fullmatch(r"[\w][\w.-]{0,100}", doc_id):
        return doc_id if doc_id.lower().endswith(".txt") else f"{doc_id}.txt"
    return hashlib.sha256(doc_id.encode()).hexdigest()[:20] + ".txt"  # e.g. ids holding "/"


def _write_documents(documents: Sequence[tuple[str, str, str]], docs: Path) -> dict[str, str]:
    """One .txt per document (title as a heading line, then the text); file name -> doc id."""
    names = {_file_name(doc): doc for doc, _, _ in documents}
    if docs.is_dir():  # the folder name is a hash of these very documents
        return names
    partial = docs.with_name(f"docs.{time.time_ns()}.partial")
    partial.mkdir(parents=True)
    for name, (_, title, text) in zip(names, documents):
        # SQuAD titles are Wikipedia page names ("Super_Bowl_50"); a heading line makes a
        # one-word title ("Normans") the document's title rather than its first sentence.
        title = " ".join(title.replace("_", " ").split())
        body = f"# {title}\n\n{text.strip()}\n" if title else f"{text.strip()}\n"
        if body.strip():  # empty documents (Cranfield 471 and 995) would only be skipped
            (partial / name).write_text(body, encoding="utf-8")
    partial.rename(docs)
    return names


# -- asking and scoring --------------------------------------------------------------------


def _ask(
    engine: Engine,
    q: EvalQuestion,
    doc_of: Callable[[str], str],
    depth: int,
    k: int,
    retrieval_only: bool,
) -> dict:
    row: dict = {"id": q.id, "question": q.question, "searched": q.question}
    result: Answer | None = None
    if not retrieval_only:
        began = time.perf_counter()
        result = engine.answer(q.question, list(q.history), k)
        row["seconds"] = round(time.perf_counter() - began, 4)
        row["searched"] = result.question  # the follow-up rewritten to stand alone
    began = time.perf_counter()
    try:
        hits: list[Hit] = engine.search(row["searched"], depth)
    except BadQuestion as exc:  # an empty or over-long question finds nothing
        hits, row["error"] = [], str(exc)
    row["search_seconds"] = round(time.perf_counter() - began, 4)
    row["relevant"] = dict(q.relevant)
    row["ranked"] = [doc_of(hit.chunk.source) for hit in hits]
    row.update(_retrieval_scores(row["ranked"], q.relevant, k))
    if result is not None:
        row.update(_answer_scores(result, q, doc_of))
    return row


def _retrieval_scores(ranked: list[str], relevant: dict[str, float], k: int) -> dict:
    """hit@1/5/10, MRR@10, nDCG@10 and recall@k; None for a question with no gold document."""
    scores = {
        "hit@1": metrics.hit_at(ranked, relevant, 1),
        "hit@5": metrics.hit_at(ranked, relevant, 5),
        "hit@10": metrics.hit_at(ranked, relevant, 10),
        "mrr@10": metrics.reciprocal_rank(ranked, relevant, 10),
        "ndcg@10": metrics.ndcg_at(ranked, relevant, 10),
        f"recall@{k}": metrics.recall_at(ranked, relevant, k),
    }
    if not any(grade > 0 for grade in relevant.values()):
        return dict.fromkeys(scores)
    return scores


def _judge(text: str, refused: bool, q: EvalQuestion) -> bool | None:
    """Whether an answer text is right for a question (a refusal is right when it has none)."""
    if not q.answerable:
        return refused
    plain = _CITATION.sub("", text)
    if q.must:
        return not refused and metrics.keyword_groups_ok(plain, q.must)
    if q.answers:
        said = f" {metrics.normalize_answer(plain)} "
        return not refused and any(f" {metrics.normalize_answer(g)} " in said for g in q.answers)
    return None


def _answer_scores(result: Answer, q: EvalQuestion, doc_of: Callable[[str], str]) -> dict:
    cited = [doc_of(c.source) for c in result.citations]
    plain = _CITATION.sub("", result.text)
    em = f1 = None
    if q.answerable and q.answers:
        em = metrics.exact_match(plain, q.answers)
        f1 = metrics.f1(plain, q.answers)
    draft_refused = not result.draft or cite.is_refusal(_CITATION.sub("", result.draft))
    return {
        "answer": result.text,
        "citations": cited,
        "refused": result.refused,
        "supported": result.supported,
        "correct": _judge(result.text, result.refused, q),
        "answerable": q.answerable,
        "outcome": result.outcome,
        "reason": result.reason,
        "draft": result.draft,
        "draft_correct": _judge(result.draft, draft_refused, q),
        "confidence": result.confidence,
        "signals": result.signals,
        "em": em,
        "f1": f1,
        "citation_precision": metrics.citation_precision(cited, set(q.relevant)),
        "timings": result.timings,
    }


def _overall(rows: list[dict], evalset: EvalSet, k: int, retrieval_only: bool) -> dict:
    scored = [r for r in rows if r["hit@1"] is not None]
    overall: dict = {"questions": len(rows), "retrieval_scored": len(scored)}
    for key in ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", f"recall@{k}"):
        overall[key] = metrics.mean(r[key] for r in scored)
    searched = [r["search_seconds"] for r in rows]
    overall["search_s_mean"] = metrics.mean(searched)
    overall["search_s_p95"] = metrics.percentile(searched, 95)
    if retrieval_only:
        return overall

    by_id = {q.id: q for q in evalset.questions}
    answerable = [r for r in rows if by_id[r["id"]].answerable]
    unanswerable = [r for r in rows if not by_id[r["id"]].answerable]
    overall["answered"] = len(rows)
    if evalset.kind == "questions" or any(q.must for q in evalset.questions):
        overall["keyword_accuracy"] = _rate(r["correct"] for r in answerable if by_id[r["id"]].must)
    if evalset.kind == "squad" or any(q.answers for q in evalset.questions):
        overall["exact_match"] = metrics.mean(r["em"] for r in answerable)
        overall["f1"] = metrics.mean(r["f1"] for r in answerable)
        overall["contains_answer"] = _rate(
            r["correct"] for r in answerable if by_id[r["id"]].answers
        )
    overall["refusal_accuracy"] = _rate(r["refused"] for r in unanswerable)
    overall["false_refusal_rate"] = _rate(r["refused"] for r in answerable)
    overall["citation_precision"] = metrics.mean(r["citation_precision"] for r in rows)
    overall["unsupported_share"] = _rate(not r["supported"] and not r["refused"] for r in rows)
    seconds = [r["seconds"] for r in rows]
    overall["answer_s_mean"] = metrics.mean(seconds)
    overall["answer_s_p95"] = metrics.percentile(seconds, 95)
    return overall


def _rate(flags: Iterable[bool | None]) -> float | None:
    """The share of True among the flags that are not None."""
    return metrics.mean(None if f is None else float(f) for f in flags)


# -- calibrating when to withhold an answer -----------------------------------------------


def decidable(row: dict) -> bool:
    """Whether the calibration decides on a report row: an answer the model wrote (not a
    refusal) that passed the check against its passages, with its signals recorded."""
    if row.get("draft_correct") is None or row.get("outcome") in (None, "refused"):
        return False
    signals = row.get("signals") or {}
    if "support" not in signals:  # withheld before the check ran (off-topic, no citation)
        return False
    # Withheld with no confidence: it failed the check itself, whatever the threshold.
    return row["outcome"] == "answered" or row.get("confidence") is not None


def curve(
    rows: Sequence[dict], cal: confidence.Calibration, thresholds: Sequence[float]
) -> list[dict]:
    """Answerable accuracy against unanswerable refusal as the threshold moves, over reports'
    rows (each answer re-decided from its recorded signals, no model run)."""
    asked = [r for r in rows if r.get("outcome")]
    answerable = [r for r in asked if r.get("answerable")]
    unanswerable = [r for r in asked if r.get("answerable") is False]
    p = [cal.probability(r["signals"]) if decidable(r) else None for r in asked]
    out = []
    for t in thresholds:
        shown = {
            id(r): (q >= t if q is not None else r["outcome"] == "answered")
            for r, q in zip(asked, p)
        }
        right = sum(1 for r in answerable if shown[id(r)] and r["draft_correct"])
        refused = sum(1 for r in unanswerable if not shown[id(r)])
        out.append(
            {
                "threshold": round(t, 3),
                "answerable_correct": right / max(1, len(answerable)),
                "unanswerable_refused": refused / max(1, len(unanswerable)),
                "shown": sum(shown.values()),
            }
        )
    return out


def calibrate(
    reports: Sequence[Path],
    refusal: float = 0.75,
    threshold: float | None = None,
    features: Sequence[str] = confidence.CHOSEN,
    max_loss: float | None = None,
) -> tuple[str, confidence.Calibration | None]:
    """Fit the refusal calibration on eval reports and pick its threshold: `threshold`; else the
    highest that loses at most `max_loss` of answerable accuracy; else the lowest that refuses
    at least `refusal` of the unanswerable questions. Returns the printed trade-off curve and
    the calibration."""
    rows, names, models = [], [], set()
    for path in reports:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        rows += report["questions"]
        names.append(f"{report['dataset']['name']} part {report['settings'].get('part')}")
        models.add(report["settings"].get("model"))
    data = [
        (r["signals"], bool(r["answerable"] and r["draft_correct"])) for r in rows if decidable(r)
    ]
    fitted_on = {
        "reports": [str(p) for p in reports],
        "sets": names,
        "model": sorted(m for m in models if m)[0] if models - {None} else None,
        "question_ids": len(rows),
    }
    unknown = set(features) - set(confidence.FEATURES)
    if unknown:
        raise RagError(
            f"unknown signal(s) {', '.join(sorted(unknown))}: use {', '.join(confidence.FEATURES)}"
        )
    cal = confidence.calibration(data, 0.5, fitted_on, tuple(features))
    grid = [i / 40 for i in range(41)]
    points = curve(rows, cal, grid)
    if threshold is None and max_loss is not None:
        # The highest threshold that costs at most `max_loss` of answerable accuracy.
        floor = points[0]["answerable_correct"] - max_loss - 1e-9
        threshold = max(p["threshold"] for p in points if p["answerable_correct"] >= floor)
    if threshold is None:
        meeting = [p for p in points if p["unanswerable_refused"] >= refusal]
        threshold = meeting[0]["threshold"] if meeting else 0.5
    cal = replace(cal, threshold=threshold)
    lines = [
        f"{len(rows)} questions, {len(data)} answers decided by the calibration "
        f"({sum(r for _, r in data)} right)",
        "weights: "
        + ", ".join(f"{f} {w:+.2f}" for f, w in zip(cal.features, cal.weights))
        + f", bias {cal.bias:+.2f}",
        "",
        "threshold  answerable correct  unanswerable refused  shown",
    ]
    for p in points:
        mark = "  <- chosen" if abs(p["threshold"] - threshold) < 1e-9 else ""
        lines.append(
            f"{p['threshold']:>9.3f}  {p['answerable_correct']:>18.3f}  "
            f"{p['unanswerable_refused']:>20.3f}  {p['shown']:>5}{mark}"
        )
    return "\n".join(lines), cal


# -- presentation and provenance -----------------------------------------------------------


def _format(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _jsonable(settings: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}


def _git() -> tuple[str | None, bool | None]:
    """The checked-out commit of the project and whether tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        status = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout: not recorded
        return None, None
    if head.returncode != 0:
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def _bar(questions: Sequence[EvalQuestion], name: str, progress: bool):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(questions, desc=name, unit="question", file=sys.stderr, disable=not progress)
