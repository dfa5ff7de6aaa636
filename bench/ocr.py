"""OCR of scans: pages per second, character error rate, and the seed questions asked of a
scanned copy of the seeds against the text copy.

The scans are made as the tests make them (tests/scans.py): each seed article typeset in DejaVu
Serif 11 pt on US-letter page images at 200 dpi, saved as a PDF with no text layer. A second,
degraded copy is turned by 1.5°, blurred and speckled, as a worn office scan. The character
error rate is the edit distance between the OCR'd text and the article, both with white space
collapsed, over the article's length. Retrieval (and, without --quick, answers with the default
model) use the seed development questions, whose gold document is renamed to the scan.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import report

NAME = "ocr"
TITLE = "OCR of scanned documents"
QUESTIONS = report.PROJECT.parent / "shared" / "eval" / "seed_dev.jsonl"
SEEDS = report.PROJECT / "seeds"


def _scans():  # noqa: ANN202 - the tests' scan maker, a module beside the tests
    sys.path.insert(0, str(report.PROJECT / "tests"))
    import scans

    return scans


def degrade(image, seed: int = 0):  # noqa: ANN001, ANN201 - PIL images
    """A worn scan: turned 1.5°, a little blurred, with speckles."""
    from PIL import Image, ImageFilter

    turned = image.rotate(1.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    pixels = np.asarray(turned.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.int16)
    rng = np.random.default_rng(seed)
    pixels = pixels + rng.normal(0, 18, pixels.shape).astype(np.int16)
    specks = rng.random(pixels.shape) < 0.002
    pixels[specks] = 0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_scans(folder: Path, worn: bool = False) -> dict[str, str]:
    """Scanned PDFs of the seeds in `folder`, named as the seeds with .pdf; {name: text}."""
    scans = _scans()
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    for n, path in enumerate(sorted(SEEDS.glob("*.txt"))):
        text = path.read_text(encoding="utf-8")
        pages = [image for image, _ in scans.pages(text)]
        if worn:
            pages = [degrade(page, seed=n * 100 + i) for i, page in enumerate(pages)]
        name = path.with_suffix(".pdf").name
        (folder / name).write_bytes(scans.pdf(pages))
        texts[name] = text
    return texts


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, a row at a time in numpy (the insertions of a row by a running
    minimum), so 5,000-character articles take a fraction of a second."""
    if not a or not b:
        return len(a) + len(b)
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(b) + 1)
    row = steps.copy()
    for i, char in enumerate(np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32), start=1):
        cost = (codes_b != char).astype(np.int64)
        nxt = np.empty_like(row)
        nxt[0] = i
        nxt[1:] = np.minimum(row[1:] + 1, row[:-1] + cost)
        row = np.minimum.accumulate(nxt - steps) + steps
    return int(row[-1])


def repaired(text: str) -> str:
    """The text with Cyrillic and Greek look-alike letters inside Latin words made Latin, as
    `rag.clean` repairs them: seed 003 writes "а" (Cyrillic) for "a" 119 times, which a scan
    shows, and OCR reads, as the Latin letter."""
    from rag.clean import HOMOGLYPHS

    table = str.maketrans(HOMOGLYPHS)
    latin = re.compile(f"[A-Za-z{''.join(HOMOGLYPHS)}]+")  # a word of Latin and look-alikes
    return re.sub(r"\w+", lambda m: m[0].translate(table) if latin.fullmatch(m[0]) else m[0], text)


def cer(read: str, truth: str) -> float:
    read, truth = " ".join(read.split()), " ".join(truth.split())
    return edit_distance(read, truth) / max(len(truth), 1)


def ocr_speed(folder: Path, workers: int, cache: Path | None) -> tuple[dict, dict[str, str]]:
    """Read every scan in `folder`: pages, seconds, pages per second, and the texts read."""
    from rag.read import ocr, read

    pages, texts = 0, {}
    began = time.perf_counter()
    for path in sorted(folder.glob("*.pdf")):
        document = read(path, folder, ocr.Options(cache=cache, workers=workers))
        pages += len(document.pages)
        texts[path.name] = document.original
    seconds = time.perf_counter() - began
    return {"workers": workers, "pages": pages, "seconds": seconds, "pps": pages / seconds}, texts


def ask(docs: Path, questions: Path, work: Path, cache: Path, answers: bool) -> dict:
    """rag eval over an index of `docs`: retrieval scores (and answers with the default model)."""
    from rag import Config, Engine
    from rag.evaluate import run

    config = Config.load(index_dir=work / "index", ocr_cache=cache)
    Engine(config).build([docs], full=True)
    return run(questions, config, retrieval_only=not answers, progress=False)


def measure(quick: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    cache = workdir / "ocr-cache"
    clean, worn = workdir / "scans", workdir / "worn"
    truth = make_scans(clean)
    make_scans(worn, worn=True)
    cores = os.cpu_count() or 1
    speeds = []
    for workers in [cores] if quick else sorted({1, cores}):
        # The last run fills the cache the indexes below read from.
        speed, read = ocr_speed(clean, workers, cache if workers == cores else None)
        speeds.append(speed)
    _, worn_read = ocr_speed(worn, cores, None)
    rates = {
        name: {"chars": len(" ".join(text.split())), "raw": cer(read[name], text),
               "clean": cer(read[name], repaired(text)),
               "worn": cer(worn_read[name], repaired(text))}
        for name, text in truth.items()
    }  # fmt: skip
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    scanned_questions = workdir / "seed_dev_scanned.jsonl"
    scanned_questions.write_text(
        "".join(
            json.dumps({**q, "gold_doc": q["gold_doc"] and Path(q["gold_doc"]).stem + ".pdf"})
            + "\n"
            for q in questions
        )
    )
    answers = not quick
    text_copy = ask(SEEDS, QUESTIONS, workdir / "text", cache, answers)
    scan_copy = ask(clean, scanned_questions, workdir / "scan", cache, answers)
    differ = []
    for a, b in zip(text_copy["questions"], scan_copy["questions"]):
        keys = ("hit@1", "correct", "outcome")
        if any(a.get(key) != b.get(key) for key in keys):
            differ.append({"id": a["id"], **{f"text {k}": a.get(k) for k in keys},
                           **{f"scan {k}": b.get(k) for k in keys},
                           "text answer": a.get("answer"), "scan answer": b.get("answer")})  # fmt: skip
    (report.PROJECT / "artifacts").mkdir(exist_ok=True)
    (report.PROJECT / "artifacts" / "ocr_bench.json").write_text(
        json.dumps({"text": text_copy, "scan": scan_copy, "cer": rates}, indent=1, default=str)
    )
    return {
        "speeds": speeds,
        "cer": rates,
        "questions": len(questions),
        "text": text_copy["overall"],
        "scan": scan_copy["overall"],
        "differ": differ,
        "answers": answers,
        "load": os.getloadavg(),
    }


def section(result: dict) -> str:
    rates = result["cer"]
    chars = sum(r["chars"] for r in rates.values())
    clean = sum(r["clean"] * r["chars"] for r in rates.values()) / chars
    worn = sum(r["worn"] * r["chars"] for r in rates.values()) / chars
    lines = [
        "The five seed articles typeset on 200 dpi US-letter page images (DejaVu Serif 11 pt) and "
        "saved as PDFs without a text layer, read by `rag.read` as an index build reads them: "
        "pages drawn by pdfium at the scan's own 200 dpi, Tesseract "
        f"{_tesseract_version()} (`eng`, one thread per page, pages side by side). The machine "
        "was shared with other work; the load average at the end was "
        f"{result['load'][0]:.1f}.",
        "",
        "| pages read at once | pages | seconds | pages per second |",
        "|---|---|---|---|",
    ]
    for s in result["speeds"]:
        lines.append(f"| {s['workers']} | {s['pages']} | {s['seconds']:.1f} | {s['pps']:.2f} |")
    lines += [
        "",
        "Character error rate: edit distance over the article's characters, white space "
        "collapsed, against the article with look-alike Cyrillic letters inside Latin words made "
        "Latin (seed 003 spells “a” with a Cyrillic “а” 119 times; the scan shows, and OCR "
        "rightly reads, a Latin a; against the file's own bytes its CER is "
        f"{rates[min(rates, key=lambda n: -rates[n]['raw'])]['raw']:.4f}). *Worn* is the same "
        "scan turned 1.5°, blurred (Gaussian, radius 0.7) and speckled (noise σ 18, 0.2 % black "
        "specks).",
        "",
        "| article | characters | CER clean | CER worn |",
        "|---|---|---|---|",
    ]
    for name, r in rates.items():
        lines.append(f"| {name} | {r['chars']:,} | {r['clean']:.4f} | {r['worn']:.4f} |")
    lines.append(f"| all | {chars:,} | {clean:.4f} | {worn:.4f} |")
    text, scan = result["text"], result["scan"]
    keys = [("hit@1", "hit@1"), ("recall@4", "recall@4"), ("mrr@10", "MRR@10")]
    if result["answers"]:
        keys += [
            ("keyword_accuracy", "answers: keyword accuracy"),
            ("citation_precision", "answers: citation precision"),
            ("refusal_accuracy", "answers: unanswerable refused"),
        ]
    lines += [
        "",
        f"The {result['questions']} seed development questions (`seed_dev.jsonl`), hybrid "
        "retrieval, k = 4, over an index of the text copy and one of the clean scanned copy"
        + (", answered by the default model" if result["answers"] else " (retrieval only)")
        + ":",
        "",
        "| | text copy | scanned copy |",
        "|---|---|---|",
    ]
    for key, label in keys:
        lines.append(f"| {label} | {_fmt(text.get(key))} | {_fmt(scan.get(key))} |")
    if result["differ"]:
        lines += [
            "",
            "Questions whose outcome differs between the copies (all rows in "
            "`artifacts/ocr_bench.json`):",
            "",
        ]
        for d in result["differ"]:
            lines.append(
                f"- `{d['id']}`: text copy hit@1 {_fmt(d['text hit@1'])}, {d['text outcome']}, "
                f"right {d['text correct']}: “{d['text answer']}”; scanned copy hit@1 "
                f"{_fmt(d['scan hit@1'])}, {d['scan outcome']}, right {d['scan correct']}: "
                f"“{d['scan answer']}”"
            )
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _tesseract_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout
        return out.split()[1]
    except (OSError, IndexError):
        return "?"


def run(quick: bool = False) -> None:
    began = datetime.datetime.now().astimezone()
    result = measure(quick)
    text = section(result)
    print(text, file=sys.stderr)
    clean = [r["clean"] for r in result["cer"].values()]
    targets = [
        report.target(
            "CER of clean 200 dpi scans ≤ 2 %",
            max(clean),
            0.02,
            f"worst article {max(clean):.4f}",
        ),
        report.target(
            "seed questions: scanned hit@1 ≥ text hit@1",
            result["scan"]["hit@1"] - result["text"]["hit@1"],
            0.0,
            f"scan {result['scan']['hit@1']:.3f}, text {result['text']['hit@1']:.3f}",
            higher=True,
        ),
    ]
    report.write_section(NAME, TITLE, text, targets=targets, began=began)
