"""`rag eval`: scoring retrieval and answers on SQuAD files, BEIR folders and our questions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag import Config, Engine
from rag.cli import main as cli
from rag.evaluate import run

SEED_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "seed_dev.jsonl"
METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@4")


def paragraph(context: str, *qas: tuple[str, str, str]) -> dict:
    return {
        "context": context,
        "qas": [
            {
                "id": qid,
                "question": question,
                "answers": [{"text": answer, "answer_start": context.index(answer)}],
            }
            for qid, question, answer in qas
        ],
    }


@pytest.fixture()
def squad_file(tmp_path: Path) -> Path:
    """Three paragraphs on unrelated subjects, four questions."""
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Eddystone_Lighthouse",
                "paragraphs": [
                    paragraph(
                        "The Eddystone Lighthouse stands on a dangerous reef fourteen kilometres "
                        "south of Plymouth. The present tower, designed by the engineer James "
                        "Douglass, was first lit in 1882 and is now automated.",
                        (
                            "q1",
                            "Who designed the present Eddystone lighthouse tower?",
                            "James Douglass",
                        ),
                        ("q2", "In which year was the Eddystone lighthouse first lit?", "1882"),
                    )
                ],
            },
            {
                "title": "Sourdough",
                "paragraphs": [
                    paragraph(
                        "Sourdough bread is leavened by a starter: a culture of wild yeast and "
                        "lactic acid bacteria kept alive with regular feedings of flour and water. "
                        "The bacteria give the bread its sour taste.",
                        ("q3", "What gives sourdough bread its sour taste?", "The bacteria"),
                    )
                ],
            },
            {
                "title": "Glaciers",
                "paragraphs": [
                    paragraph(
                        "A glacier forms where snow accumulates faster than it melts for many "
                        "years. The snow compacts into dense ice that slowly flows downhill under "
                        "its own weight, carving U-shaped valleys.",
                        ("q4", "What shape of valley do glaciers carve?", "U-shaped"),
                    )
                ],
            },
        ],
    }
    path = tmp_path / "tiny_squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture()
def beir_folder(tmp_path: Path) -> Path:
    """Five abstracts (one id with a slash, which is no file name), two graded queries."""
    folder = tmp_path / "tiny_beir"
    (folder / "qrels").mkdir(parents=True)
    corpus = [
        ("1", "boundary layer transition", "Transition of the laminar boundary layer to turbulence"
         " on a flat plate at supersonic speeds, measured in a wind tunnel."),
        ("2", "heat transfer at hypersonic speed", "Heat transfer to a blunt body re-entering the"
         " atmosphere at hypersonic speed, with ablation of the heat shield."),
        ("3", "wing flutter", "Flutter of a swept wing: coupled bending and torsion oscillations"
         " of the wing structure in the airflow."),
        ("doc/4", "laminar flow stability", "The stability of laminar boundary layer flow and the"
         " growth of small disturbances before transition."),
        ("5", "propeller noise", "Noise radiated by aircraft propellers at high tip speeds."),
    ]  # fmt: skip
    lines = [json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in corpus]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = [
        ("1", "when does a laminar boundary layer become turbulent?"),
        ("2", "how hot does a re-entry heat shield get?"),
    ]
    lines = [json.dumps({"_id": i, "text": t}) for i, t in queries]
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\t1\t4\n1\tdoc/4\t2\n2\t2\t4\n", encoding="utf-8"
    )
    return folder


def test_eval_command_scores_retrieval_on_a_squad_file(
    squad_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    work = tmp_path / "work"
    argv = ["eval", str(squad_file), "--retrieval-only", "--retrieval", "dense"]
    assert cli([*argv, "--out", str(out), "--work-dir", str(work)]) == 0

    printed = capsys.readouterr().out
    assert "tiny_squad (squad): 4 questions over 3 documents" in printed
    table = printed[printed.index("metric") : printed.index("report:")].strip().splitlines()
    assert table[0].split() == ["metric", "value"]
    assert len({len(line) for line in table if not line.startswith("-")}) == 1  # aligned
    assert any(line.startswith("hit@1 ") for line in table)

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["dataset"]["kind"] == "squad"
    assert report["settings"]["retrieval_only"] and report["settings"]["retrieval"] == "dense"
    for name in METRICS:
        assert 0.0 <= report["overall"][name] <= 1.0
    rows = {row["id"]: row for row in report["questions"]}
    assert set(rows) == {"q1", "q2", "q3", "q4"}
    for row in rows.values():
        assert 0.0 <= row["hit@1"] <= 1.0
        assert "answer" not in row
    # Passages map back to the paragraphs' ids; each question's own paragraph comes first.
    assert rows["q3"]["relevant"] == {"001_000.txt": 1.0}
    assert rows["q3"]["ranked"][0] == "001_000.txt"
    assert report["overall"]["hit@1"] == 1.0


def test_beir_folder_gets_graded_ndcg_and_reuses_its_cached_index(
    beir_folder: Path, tmp_path: Path
) -> None:
    config = Config.load(retrieval="dense")
    first = run(beir_folder, config, progress=False, work_dir=tmp_path / "work")
    assert first["settings"]["retrieval_only"]  # BEIR sets have no answers to score
    assert first["index"]["embedded"] == 5
    boundary = next(r for r in first["questions"] if r["id"] == "1")
    assert boundary["relevant"] == {"1": 4.0, "doc/4": 2.0}
    assert set(boundary["ranked"][:2]) == {"1", "doc/4"}  # the slashed id maps back
    assert 0.9 < boundary["ndcg@10"] <= 1.0
    assert 0.0 < first["overall"]["ndcg@10"] <= 1.0

    # Another query-time setting reuses the index: nothing is embedded again.
    again = run(beir_folder, config.with_(k=2), progress=False, work_dir=tmp_path / "work")
    assert again["index"]["dir"] == first["index"]["dir"]
    assert again["index"]["cached"] and again["index"]["embedded"] == 0
    assert "recall@2" in again["overall"]


@pytest.mark.skipif(
    not SEED_QUESTIONS.exists(), reason="../shared/eval is not beside this checkout"
)
def test_seed_questions_get_answer_metrics_from_the_small_model(
    corpus: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "seed_dev.jsonl"
    shutil.copy(SEED_QUESTIONS, questions)
    config = Config.load(index_dir=tmp_path / "index", model="smollm2-135m", retrieval="dense")
    Engine(config).build([corpus])

    report = run(questions, config, limit=3, seed=2, progress=False)

    overall = report["overall"]
    assert overall["questions"] == overall["answered"] == 3
    for name in ("keyword_accuracy", "refusal_accuracy", "false_refusal_rate", "unsupported_share"):
        assert 0.0 <= overall[name] <= 1.0
    assert overall["citation_precision"] is None or 0.0 <= overall["citation_precision"] <= 1.0
    assert 0.0 < overall["answer_s_mean"] <= overall["answer_s_p95"]
    for row in report["questions"]:
        assert row["answer"] and isinstance(row["refused"], bool) and row["seconds"] > 0
        assert isinstance(row["correct"], bool)
        assert all(doc.endswith(".txt") for doc in row["citations"])
    assert report["settings"]["model"] == "smollm2-135m"
    # The sample can be drawn again: its seed is not overwritten by the model's sampling seed.
    assert report["settings"]["limit"] == 3 and report["settings"]["sample_seed"] == 2
