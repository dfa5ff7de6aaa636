"""Scans, images and PDF tables: real Tesseract, the real index and the real small model.

The scans are made here: a seed article typeset with a real font on page images, saved as a PDF
with no text layer, as a scanner would; then indexed and asked about like any document.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scans
from conftest import SEEDS, SMALL_MODEL
from PIL import Image
from reportlab.lib.pagesizes import letter
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

from rag import Config, Engine, UnreadableDocument, ingest
from rag.read import ocr, read
from rag.read.pdf import garbled

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="needs Tesseract: make tesseract"
)

LAPPO = "004_54fdbde5d22b5a7d.txt"
LAPPO_TEXT = (SEEDS / LAPPO).read_text(encoding="utf-8")
# The scan's second page starts at the paragraph that names Lappo, so pages matter.
SECOND_PAGE = "The head of the border committee"
NOTICE = (
    "Harbour notice 17\n\n"
    "The Vilnius ferry terminal will close for repairs from 3 May. Passengers for Riga should "
    "board at the north pier, gate 6, where a shuttle bus waits for every ferry."
)
WATER_TEXT = "The Kaunas water board met on Tuesday. It voted to replace the old pumps at Neris."
WATER_SCAN = (
    "The pump contract went to a firm from Tartu for 2.4 million euros. Work starts in June "
    "and the new pumps must run before the first frost."
)
DEPARTMENTS = ["Roads", "Parks", "Schools", "Libraries"]
BUDGET_ROWS = [
    [str(2000 + i), f"${(i * 37) % 90 + 10}.{i % 10} million", DEPARTMENTS[i % 4]]
    for i in range(60)
]


def words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def page_of(passage: str, pages: list[tuple[Image.Image, str]]) -> int:
    """The page (from 1) on which a passage's first words were typeset."""
    start = " ".join(words(passage).split()[:6])
    found = [n for n, (_, text) in enumerate(pages, start=1) if start in words(text)]
    assert len(found) == 1, (start, found)
    return found[0]


def mixed_pdf() -> bytes:
    """Page 1 has a text layer; page 2 is a scanned picture of text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=letter)
    pdf.drawString(72, 720, WATER_TEXT)
    pdf.showPage()
    image, _ = scans.pages(WATER_SCAN)[0]
    pdf.drawImage(ImageReader(image), 0, 0, *letter)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def budget_pdf() -> bytes:
    """A text page, then a ruled table of 60 rows (Year / Budget / Department) that starts on
    page 2 and goes on over page 3 without its header row."""
    style = getSampleStyleSheet()["Normal"]
    buffer = io.BytesIO()
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.5, "black")])
    SimpleDocTemplate(buffer, pagesize=letter, title="Ostrava spending plan").build(
        [
            Paragraph("The city of Ostrava published its spending plan in March.", style),
            PageBreak(),
            Paragraph("Spending by year and department is listed below.", style),
            Table([["Year", "Budget", "Department"], *BUDGET_ROWS], style=grid),
            Paragraph("Figures are audited each spring.", style),
        ]
    )
    return buffer.getvalue()


def garbled_pdf() -> bytes:
    """A scanned page whose text layer (invisible, as OCR layers are) is symbol soup."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=letter)
    image, _ = scans.pages(NOTICE)[0]
    pdf.drawImage(ImageReader(image), 0, 0, *letter)
    layer = pdf.beginText(72, 700)
    layer.setTextRenderMode(3)  # invisible
    for _ in range(12):
        layer.textLine("¤¦§¨©ª «¬®¯°± ²³µ¶·¸ ¹º»¼½¾ ¿×÷þÞð")
    pdf.drawText(layer)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes that declares `width`×`height` gray pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = zlib.compress(b"\x00" * (1 + width // 8) * 64, 9)  # the first rows only
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def pdf_picture_bomb() -> bytes:
    """A one-page PDF showing a picture that declares 100,000×100,000 pixels."""
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, NumberObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    picture = StreamObject()
    picture.set_data(b"\x00" * 1024)
    picture.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(100_000),
            NameObject("/Height"): NumberObject(100_000),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    contents = StreamObject()
    contents.set_data(b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    page[NameObject("/Resources")] = DictionaryObject(
        {
            NameObject("/XObject"): DictionaryObject(
                {NameObject("/Im0"): writer._add_object(picture)}
            )
        }
    )
    page[NameObject("/Contents")] = writer._add_object(contents)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def reason(path: Path, options: ocr.Options | None = None) -> str:
    with pytest.raises(UnreadableDocument) as caught:
        read(path, path.parent, options)
    return str(caught.value)


# -- an index over the seeds with the Lappo article scanned -----------------------------------


@dataclass
class Scanned:
    engine: Engine
    corpus: Path
    cache: Path
    lappo: list[tuple[Image.Image, str]]  # the scan's pages and the text each shows
    progress: list[tuple[str, int, int]]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    root = tmp_path_factory.mktemp("scanned")
    corpus = root / "corpus"
    corpus.mkdir()
    for path in SEEDS.glob("*.txt"):
        if path.name != LAPPO:
            shutil.copy(path, corpus)
    lappo = scans.pages(LAPPO_TEXT, new_page_at=(SECOND_PAGE,))
    (corpus / "lappo-scan.pdf").write_bytes(scans.pdf([image for image, _ in lappo]))
    (corpus / "notice.png").write_bytes(scans.png(scans.pages(NOTICE)[0][0]))
    (corpus / "water-board.pdf").write_bytes(mixed_pdf())
    (corpus / "budget.pdf").write_bytes(budget_pdf())
    config = Config.load(
        index_dir=root / "index",
        ocr_cache=root / "ocr-cache",
        model=SMALL_MODEL,
        max_tokens=64,
        threads=2,
    )
    engine = Engine(config)
    progress: list[tuple[str, int, int]] = []
    summary = engine.build([corpus], progress=lambda *seen: progress.append(seen))
    assert summary.skipped == () and summary.documents == 8
    return Scanned(engine, corpus, root / "ocr-cache", lappo, progress)


def test_a_scanned_pdf_is_searched_and_cited_with_its_page(scanned: Scanned) -> None:
    assert len(scanned.lappo) >= 2
    hit = scanned.engine.search("Lappo border guards immediate and cruel", k=1)[0]
    assert hit.chunk.source == "lappo-scan.pdf"
    assert "immediate and cruel" in hit.chunk.original
    assert hit.chunk.page == page_of(hit.chunk.original, scanned.lappo)
    manifest = scanned.engine.index.manifest["documents"]["lappo-scan.pdf"]
    assert manifest["pages"] == len(scanned.lappo)
    # The same title as the text copy of the article gets.
    assert manifest["title"] == "Top Putin Ally Threatens \u2018Cruel\u2019 Attacks on New Country"


def test_an_answer_from_a_scan_cites_the_page_and_the_words_read(scanned: Scanned) -> None:
    answer = scanned.engine.answer("What did Lappo threaten?")
    assert answer.outcome == "answered", (answer.reason, answer.draft)
    cited = [c for c in answer.citations if c.source == "lappo-scan.pdf"]
    assert cited
    document = read(
        scanned.corpus / "lappo-scan.pdf", scanned.corpus, ocr.Options(cache=scanned.cache)
    )
    for c in cited:
        assert c.page == page_of(c.text, scanned.lappo)
        assert document.original[c.start : c.end] == c.text  # spans index the OCR'd text
        assert document.page_at(c.start) == c.page


def test_an_image_file_is_read_and_found(scanned: Scanned) -> None:
    hit = scanned.engine.search("When does the Vilnius ferry terminal close?", k=1)[0]
    assert hit.chunk.source == "notice.png" and hit.chunk.page is None
    assert "board at the north pier, gate 6" in hit.chunk.original
    assert scanned.engine.index.manifest["documents"]["notice.png"]["title"] == "Harbour notice 17"


def test_a_mixed_pdf_keeps_its_text_layer_and_ocrs_only_the_scanned_page(
    scanned: Scanned,
) -> None:
    hit = scanned.engine.search("pump contract firm from Tartu", k=1)[0].chunk
    assert hit.source == "water-board.pdf" and "2.4 million euros" in hit.original
    path = scanned.corpus / "water-board.pdf"
    document = read(path, scanned.corpus, ocr.Options(cache=scanned.cache))
    assert document.original.startswith(WATER_TEXT + "\n\n")  # the text layer, as written
    assert document.page_at(document.original.index("2.4 million euros")) == 2
    sha = ingest.file_sha256(path)
    read_pages = [p.name for p in (scanned.cache / sha[:2] / sha).glob("*/page-*.txt")]
    assert read_pages == ["page-00002.txt"]


def test_ocr_progress_counts_pages(scanned: Scanned) -> None:
    ocr_seen = [(done, total) for stage, done, total in scanned.progress if stage == "ocr"]
    pages = len(scanned.lappo)
    assert [(n, pages) for n in range(pages + 1)] == [s for s in ocr_seen if s[1] == pages]
    assert (1, 1) in ocr_seen  # the image, and the mixed PDF's one scanned page


def test_a_full_rebuild_takes_scans_from_the_cache(
    scanned: Scanned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = ocr.recognize

    def counted(*args: object, **kwargs: object) -> tuple[str, float]:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ocr, "recognize", counted)
    config = scanned.engine.config.with_(index_dir=tmp_path / "again")
    summary = Engine(config).build([scanned.corpus], full=True)
    assert calls == [] and summary.skipped == ()
    assert summary.chunks == scanned.engine.index.size
    # An unchanged scan is not even read by an incremental rebuild; a new one is OCR'd.
    (scanned.corpus / "second.png").write_bytes(scans.png(scans.pages(WATER_SCAN)[0][0]))
    try:
        summary = Engine(config).build([scanned.corpus])
    finally:
        (scanned.corpus / "second.png").unlink()
    assert summary.added == ("second.png",) and len(calls) == 1


def test_a_table_row_is_found_with_its_headers_and_page(scanned: Scanned) -> None:
    hits = scanned.engine.search("budget 2023", k=3)
    row = "Year: 2023; Budget: $51.3 million; Department: Libraries"
    found = [h.chunk for h in hits if h.chunk.source == "budget.pdf" and row in h.chunk.original]
    assert found and found[0].page == 2


def test_a_table_over_two_pages_keeps_its_header_on_the_second(tmp_path: Path) -> None:
    path = tmp_path / "budget.pdf"
    path.write_bytes(budget_pdf())
    document = read(path, tmp_path)
    lines = document.original.splitlines()
    for i, (year, budget, department) in enumerate(BUDGET_ROWS):
        line = f"Year: {year}; Budget: {budget}; Department: {department}"
        assert lines.count(line) == 1, line  # each row once, whole, on one line
        page = document.page_at(document.original.index(line))
        assert page == (2 if i < 33 else 3)
    assert document.page_at(document.original.index("Figures are audited")) == 3
    assert document.original.index("listed below") < document.original.index("Year: 2000")
    assert document.title == "Ostrava spending plan" and len(document.pages) == 3


def notice_image() -> Image.Image:
    """The top of the notice's page: its heading and paragraph."""
    page, _ = scans.pages(NOTICE)[0]
    return page.crop((0, 150, page.width, 650))


@pytest.mark.parametrize(
    ("suffix", "kind"), [(".jpg", "JPEG"), (".tiff", "TIFF"), (".webp", "WEBP")]
)
def test_every_image_type_is_read(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / f"notice{suffix}"
    notice_image().convert("RGB").save(path, format=kind)
    document = read(path, tmp_path)
    assert "Vilnius ferry terminal will close for repairs" in document.original
    assert document.title == "Harbour notice 17" and document.pages == ()


def test_each_page_of_a_tiff_is_a_page(tmp_path: Path) -> None:
    first, second = notice_image(), scans.pages(WATER_SCAN)[0][0].crop((0, 150, 1700, 500))
    path = tmp_path / "fax.tif"
    first.save(path, format="TIFF", save_all=True, append_images=[second])
    document = read(path, tmp_path)
    assert len(document.pages) == 2
    assert document.page_at(document.original.index("north pier")) == 1
    assert document.page_at(document.original.index("firm from Tartu")) == 2


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "TIFF"])
def test_damaged_images_are_read_or_rejected_with_a_reason(tmp_path: Path, kind: str) -> None:
    buffer = io.BytesIO()
    notice_image().resize((850, 250)).save(buffer, format=kind)
    good = buffer.getvalue()
    rng = np.random.default_rng(len(kind))
    for trial in range(6):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 40))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path = tmp_path / f"{trial}.{kind.lower()}"
        path.write_bytes(bytes(data))
        try:
            read(path, tmp_path)
        except UnreadableDocument as error:
            assert str(error) and "\n" not in str(error) and "0x" not in str(error)


# -- bad scans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (9_000, 9_000)])
def test_a_decompression_bomb_image_is_refused_unread(
    tmp_path: Path, width: int, height: int
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(width, height))
    assert path.stat().st_size < 2000
    began = time.perf_counter()
    said = reason(path)
    assert time.perf_counter() - began < 5
    assert "megapixels: refused unread (a decompression bomb?)" in said
    assert f"{width * height:,}" in said or f"{width:,}×{height:,}" in said


def test_a_pdf_picture_declaring_gigapixels_is_refused_undrawn(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf_picture_bomb())
    began = time.perf_counter()
    assert reason(path) == (
        "page 1: image of 100,000×100,000 pixels, more than 50 megapixels: refused unread "
        "(a decompression bomb?)"
    )
    assert time.perf_counter() - began < 5


def test_an_image_of_noise_ends_in_bounded_time(tmp_path: Path) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (1400, 1100), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    began = time.perf_counter()
    try:
        document = read(path, tmp_path)
    except UnreadableDocument as error:
        assert str(error) in ("no text found in the image (OCR)", "no text")
    else:  # some specks read as letters: indexed like any text
        assert document.original.strip()
    assert time.perf_counter() - began < 2 * ocr.PAGE_TIMEOUT


def test_a_page_scanned_sideways_is_read(tmp_path: Path) -> None:
    page, _ = scans.pages(LAPPO_TEXT, new_page_at=(SECOND_PAGE,))[1]
    path = tmp_path / "turned.png"
    path.write_bytes(scans.png(page.rotate(90, expand=True)))
    text = words(read(path, tmp_path).original)
    assert "the answer will be immediate and cruel" in text
    assert "anatoly lappo claimed that poland was acting" in text


def test_a_garbled_text_layer_is_read_again_by_ocr(tmp_path: Path) -> None:
    path = tmp_path / "notice.pdf"
    path.write_bytes(garbled_pdf())
    document = read(path, tmp_path)
    assert "Vilnius ferry terminal will close for repairs" in document.original
    assert "¤" not in document.original and document.pages == (0,)


def test_what_counts_as_a_garbled_text_layer() -> None:
    assert garbled("¤¦§¨©ª «¬®¯°± ²³µ¶·¸ ¹º»¼½¾")
    assert garbled("(cid:3)(cid:71)(cid:72)(cid:3)(cid:83) (cid:79)(cid:68)")
    assert garbled("\ue000\ue001\ue002 \ue003\ue004")  # private-use glyphs
    assert not garbled("")
    assert not garbled("Year: 2023; Budget: $51.3 million (est.) — 12% more.")
    assert not garbled("Лаппо пригрозил «жестоким» ответом. 卢卡申科说。")
    assert not garbled("def f(x): return {k: v for k, v in x.items() if v[0] ^ 1}  # ~ok")


LONG_SCAN = """
import json, sys
from pathlib import Path
import pdfplumber, PIL.Image, pypdf, pypdfium2  # loaded before the baseline
from rag.read import ocr, read

def peak():  # bytes: the highest VmRSS since the reset
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

path = Path(sys.argv[1])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = peak()
peaks = []
document = read(path, path.parent, ocr.Options(workers=2, progress=lambda d, t: peaks.append(peak() - base)))
print(json.dumps({"pages": len(document.pages), "peaks": peaks, "text": document.original}))
"""


def test_a_long_scan_is_read_page_by_page_in_bounded_memory(tmp_path: Path) -> None:
    """20 pages at 300 dpi, 170 MB as pictures all at once: memory stops growing after the
    first few pages. (A 500-page scan, measured by hand, is in docs/RELIABILITY.md.)"""
    text = "\n\n".join(f"Ledger sheet {n}. Received {n * 7} crates of apples." for n in range(20))
    pages = [image for image, _ in scans.pages(text, dpi=300, new_page_at=("Ledger",))]
    assert len(pages) == 20
    path = tmp_path / "ledger.pdf"
    path.write_bytes(scans.pdf(pages, dpi=300))
    del pages
    done = subprocess.run(
        [sys.executable, "-c", LONG_SCAN, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_THREAD_LIMIT="1"),
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["pages"] == 20
    assert "Ledger sheet 19. Received 133 crates of apples." in seen["text"]
    page = round(8.5 * 300) * round(11 * 300)  # one gray page at 300 dpi: 8.4 MB
    peaks = seen["peaks"]  # after 0, 1, ... 20 pages read
    assert peaks[-1] - peaks[6] < 2 * page, peaks  # flat: the next pages cost nothing more
    assert peaks[-1] < 15 * page, peaks  # a few pages' pictures in flight, not 20


# -- settings and a missing Tesseract ----------------------------------------------------------


def test_the_ocr_languages_are_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_OCR_LANG", "eng+deu")
    assert Config.load().ocr_languages == "eng+deu"
    assert "ocr_languages" in ingest.settings(Config.load())  # a change rebuilds the index
    path = tmp_path / "notice.png"
    path.write_bytes(scans.png(scans.pages(NOTICE)[0][0]))
    assert reason(path, ocr.Options(languages="eng+xyz")) == (
        "Tesseract has no xyz language data (OCR languages eng+xyz): install the Debian package "
        "tesseract-ocr-xyz"
    )
    assert "not like 'eng'" in reason(path, ocr.Options(languages="eng; rm -rf /"))


def test_without_tesseract_scans_are_skipped_with_the_package_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag.cli import main as cli

    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    (corpus / "notice.png").write_bytes(scans.png(scans.pages(NOTICE)[0][0]))
    (corpus / "water-board.pdf").write_bytes(mixed_pdf())
    (corpus / "budget.pdf").write_bytes(budget_pdf())  # a text layer only: read as ever
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("RAG_OCR_CACHE", str(tmp_path / "cache"))
    code = cli(["index", str(corpus), "--index-dir", str(tmp_path / "index")])
    out = capsys.readouterr().out
    assert code == 0
    message = (
        "Tesseract OCR is not installed (needed for scans and images): install the Debian "
        "package tesseract-ocr (sudo apt-get install tesseract-ocr, or make tesseract)"
    )
    assert f"skipped notice.png: {message}\n" in out
    assert f"skipped water-board.pdf: {message}\n" in out
    documents = Engine(Config.load(index_dir=tmp_path / "index")).index.manifest["documents"]
    assert sorted(documents) == sorted([*(p.name for p in SEEDS.glob("*.txt")), "budget.pdf"])


def test_the_progress_bar_draws_ocr_pages_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    report = ingest.progress_bar()
    for done in range(4):
        report("ocr", done, 3)
    for done in range(3):
        report("ocr", done, 2)
    report("reading", 1, 2)
    err = capsys.readouterr().err
    assert "OCR" in err and "3/3" in err and "2/2" in err and "page" in err
    assert "reading" not in err
