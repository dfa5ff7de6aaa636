"""Reading PDF files: each page's text layer, tables as rows with their headers, OCR for scanned
pages, the page starts, the title.

pypdf reads the text layer (as before). pypdfium2 looks at what each page draws (pictures and
lines, cheaply, without decoding them) and draws the pages that need OCR. pdfplumber finds
tables, only on pages that draw lines, since finding them means laying the page out (ten times
pypdf's cost). A page is OCR'd when its text layer is garbled, or when it shows a picture (a
tenth of the page or more) and has no text layer, or only a stamp of a few words over a
full-page picture (a scanned page with a printed page number). Blank pages and pure drawings
are not OCR'd, so a text PDF never needs Tesseract.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UnreadableDocument
from . import ocr
from .common import JUNK_TITLE, Extracted, reason
from .tables import cell, looks_like_header, rows_text

if TYPE_CHECKING:
    from PIL.Image import Image

# A text layer is garbled when under this share of its visible characters are letters,
# digits, spaces and ordinary punctuation (symbol soup from a font without a Unicode map), or
# when it is mostly "(cid:N)" codes, replacement characters or private-use glyphs.
MIN_PLAIN_SHARE = 0.75
_CID = re.compile(r"\(cid:\d+\)")
_PLAIN_PUNCTUATION = set(".,;:!?'\"()[]{}-–—/\\|%&$€£@#*+=<>^~`’‘“”«»…•·°§_\u00ad")
# Pages drawing fewer lines than this (a rule under a running head, a box) are not searched
# for tables: a ruled table draws a line or box per cell border.
TABLE_LINES = 3
# Text this short on a page covered by a picture is a stamp (a page number), not the content.
STAMP_CHARS = 40


@dataclass(frozen=True)
class _Page:
    """What a page draws, from pdfium's object list (nothing is decoded)."""

    picture_share: float  # the largest picture's share of the page area (0 to 1)
    largest_picture: tuple[int, int]  # the largest pixel size a picture declares
    picture_dpi: float  # the resolution of the picture covering most of the page
    lines: int  # path objects: rules, boxes, table grids


def read_pdf(data: bytes, options: ocr.Options | None = None) -> Extracted:
    """The text of a PDF, its title and where each page starts."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument("not a PDF (no %PDF header)")
    if b"%%EOF" not in data[-1024:]:
        raise UnreadableDocument("truncated or damaged PDF: no end-of-file marker")
    try:
        # Through a BufferedReader: pypdf sizes a BytesIO by taking its buffer, which copies
        # the whole file (180 MB more for a 500-page scan).
        reader = PdfReader(io.BufferedReader(io.BytesIO(data)))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError) as error:
                raise UnreadableDocument(f"encrypted PDF ({reason(error)})") from error
            if not opened:
                raise UnreadableDocument("encrypted PDF (needs a password)")
        pages = list(reader.pages)
    except UnreadableDocument:
        raise
    except Exception as error:  # pypdf raises many types on damaged files
        raise UnreadableDocument(f"truncated or damaged PDF: {reason(error)}") from error
    texts: list[str] = []
    failure: Exception | None = None
    for page in pages:
        try:
            texts.append((page.extract_text() or "").strip())
        except Exception as error:  # one bad page should not lose the others
            failure = failure or error
            texts.append("")
    try:
        title = (reader.metadata or {}).get("/Title") or ""
    except Exception:  # a damaged info dictionary only costs the title
        title = ""
    title = "" if JUNK_TITLE.match(str(title)) else str(title)
    # pypdf holds the pictures' data by now (a 180 MB scan: 175 MB): let it go before drawing.
    del pages, reader
    texts = _beyond_text_layer(data, texts, options or ocr.Options())
    if not any(texts):
        if failure:
            raise UnreadableDocument(f"truncated or damaged PDF: {reason(failure)}")
        raise UnreadableDocument("PDF has no text (no text layer, and no scanned page to read)")
    original, _, starts = ocr.join_pages(texts)
    return original, title, starts


def garbled(text: str) -> bool:
    """Whether a page's text layer is junk rather than words (see MIN_PLAIN_SHARE)."""
    visible = "".join(text.split())
    if not visible:
        return False
    codes = sum(len(m) for m in _CID.findall(visible))
    if codes > len(visible) / 2:
        return True
    plain = sum(
        1
        for c in visible
        if c.isalnum() and unicodedata.category(c) not in ("Co", "Cn") or c in _PLAIN_PUNCTUATION
    )
    return plain < MIN_PLAIN_SHARE * len(visible)


def _beyond_text_layer(data: bytes, texts: list[str], options: ocr.Options) -> list[str]:
    """The pages' texts with tables rewritten as rows and scanned pages OCR'd."""
    try:
        document = _Pdfium(data)
    except Exception:  # pdfium refuses what pypdf opened: keep the text layer as it is
        return texts
    try:
        shapes = [_shape(document, i) for i in range(len(document))]
        if len(shapes) != len(texts):
            return texts
        to_ocr = [i for i, text in enumerate(texts) if _needs_ocr(text, shapes[i])]
        tabled = [i for i, text in enumerate(texts) if text and shapes[i].lines >= TABLE_LINES]
        tabled = sorted(set(tabled) - set(to_ocr))
        texts = list(texts)
        if tabled:
            texts = _with_tables(data, texts, tabled)
        if to_ocr:
            for i in to_ocr:
                width, height = shapes[i].largest_picture
                if width * height > ocr.MAX_PIXELS:
                    raise UnreadableDocument(
                        f"page {i + 1}: {ocr.bomb(width * height, (width, height))}"
                    )
            read, timeouts = ocr.read_pages(
                hashlib.sha256(data).hexdigest(),
                to_ocr,
                lambda i: _draw(document, i, _resolution(shapes[i])),
                options,
            )
            for i in to_ocr:
                texts[i] = read[i].strip()
            if not any(texts):
                raise UnreadableDocument(
                    f"OCR timed out on {timeouts} page(s) (over {ocr.PAGE_TIMEOUT:.0f} s each)"
                    if timeouts
                    else f"no text found on its {len(to_ocr)} scanned page(s) (OCR)"
                )
        return texts
    finally:
        document.close()


class _Pdfium:
    """A pdfium document opened again every REOPEN pages it loads: pdfium keeps every picture
    it has met until its document closes, which for a 500-page scan is the whole file again."""

    REOPEN = 32

    def __init__(self, data: bytes) -> None:
        import pypdfium2 as pdfium

        self._open = lambda: pdfium.PdfDocument(data)
        self._document = self._open()
        self._loaded = 0

    def __len__(self) -> int:
        return len(self._document)

    def __getitem__(self, i: int) -> object:
        if self._loaded >= self.REOPEN:
            self._document.close()
            self._document, self._loaded = self._open(), 0
        self._loaded += 1
        return self._document[i]

    def close(self) -> None:
        self._document.close()


def _shape(document: _Pdfium, i: int) -> _Page:
    import pypdfium2.raw as pdfium_c

    share, largest, lines, dpi = 0.0, (0, 0), 0, 0.0
    try:
        page = document[i]
    except Exception:  # a page pdfium cannot load: judged by its text layer alone
        return _Page(share, largest, dpi, lines)
    try:
        width, height = page.get_size()
        area = max(width * height, 1.0)
        for obj in page.get_objects(
            filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH), max_depth=4
        ):
            if obj.type == pdfium_c.FPDF_PAGEOBJ_PATH:
                lines += 1
                continue
            left, bottom, right, top = obj.get_bounds()
            shown = max(0.0, min(right, width) - max(left, 0.0)) * max(
                0.0, min(top, height) - max(bottom, 0.0)
            )
            pixels = obj.get_px_size()
            if shown / area > share:
                share, dpi = shown / area, pixels[0] * 72 / max(right - left, 1.0)
            if pixels[0] * pixels[1] > largest[0] * largest[1]:
                largest = pixels
    except Exception:  # an object pdfium cannot describe: judge the page by what was seen
        pass
    finally:
        page.close()
    return _Page(min(share, 1.0), largest, dpi, lines)


def _needs_ocr(text: str, shape: _Page) -> bool:
    if garbled(text):
        return True
    if not text:
        return shape.picture_share >= 0.1
    return len("".join(text.split())) < STAMP_CHARS and shape.picture_share >= 0.5


def _resolution(shape: _Page) -> float:
    """The resolution to draw a page at for OCR: ocr.DPI, or the scan's own when it is lower
    (drawing a 200 dpi scan at 300 adds no detail, only pixels to read: twice the time), but
    not below ocr.MIN_DPI, under which Tesseract misreads small print."""
    if shape.picture_share >= 0.5 and shape.picture_dpi:
        return max(ocr.MIN_DPI, min(ocr.DPI, shape.picture_dpi))
    return ocr.DPI


def _draw(document: _Pdfium, i: int, dpi: float) -> tuple[Image, int]:
    """Page i as an 8-bit gray image at `dpi` (less for a page too large to draw at it)."""
    page = None
    try:
        page = document[i]
        width, height = page.get_size()
        scale = dpi / 72
        pixels = width * height * scale * scale
        if pixels > ocr.MAX_PIXELS:
            scale *= (ocr.MAX_PIXELS / pixels) ** 0.5
        bitmap = page.render(scale=scale, grayscale=True)
        image = bitmap.to_pil().convert("L")  # a copy: the bitmap's buffer can go
        bitmap.close()
        return image, round(72 * scale)
    except Exception as error:  # pdfium fails to draw a damaged page
        raise UnreadableDocument(
            f"page {i + 1} cannot be drawn for OCR: {reason(error)}"
        ) from error
    finally:
        if page is not None:
            page.close()


# -- tables ------------------------------------------------------------------------------------


def _with_tables(data: bytes, texts: list[str], pages: Sequence[int]) -> list[str]:
    """Pages holding tables, their text rewritten: each table as rows with their headers
    (tables.rows_text), where it stands on the page. A table that goes on over the next page
    keeps the header of its first part."""
    import pdfplumber

    try:
        pdf = pdfplumber.open(io.BytesIO(data), password="")
    except Exception:  # pdfminer cannot parse what pypdf could: keep the text layer
        return texts
    header: list[str] | None = None
    columns, previous = 0, -2
    try:
        for i in pages:
            page = pdf.pages[i]
            if i != previous + 1:  # a table goes on over the next page only
                header, columns = None, 0
            previous = i
            try:
                found = [t for t in page.find_tables() if _is_table(t)]
                if not found:
                    header, columns = None, 0
                    continue
                texts[i], header, columns = _page_text(page, found, header, columns)
            except Exception:  # one page pdfminer trips on keeps its text layer
                header, columns = None, 0
            finally:
                page.close()
    finally:
        pdf.close()
    return texts


def _is_table(table: object) -> bool:
    """Two rows and two columns at least: pdfplumber takes any box drawn around text for a
    table of one cell."""
    rows = table.extract()
    return len(rows) >= 2 and max((len(r) for r in rows), default=0) >= 2


def _page_text(
    page: object, tables: list, header: list[str] | None, columns: int
) -> tuple[str, list[str] | None, int]:
    """The page's lines outside the tables and the tables' rows, in order down the page; and
    the last table's header and width, for a table that goes on over the next page."""
    boxes = [t.bbox for t in tables]

    def outside(obj: dict) -> bool:
        if obj.get("object_type") != "char":
            return True
        x, y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)

    items = [(line["top"], line["text"]) for line in page.filter(outside).extract_text_lines()]
    last_header, last_columns = None, 0
    for n, table in enumerate(sorted(tables, key=lambda t: t.bbox[1])):
        rows = [[cell(c) for c in row] for row in table.extract()]
        width = max(len(r) for r in rows)
        names: list[str] | None = None
        if looks_like_header(rows[0], rows[1:]):
            names, rows = rows[0], rows[1:]
        elif n == 0 and header and width == columns and not _text_above(items, table.bbox[1]):
            names = header  # the rest of the last page's table
        items.append((table.bbox[1], "\n" + rows_text(rows, header=names) + "\n"))
        last_header, last_columns = names, width
    items.sort(key=lambda item: item[0])
    text = "\n".join(t for _, t in items).strip()
    return re.sub(r"\n{3,}", "\n\n", text), last_header, last_columns


def _text_above(items: list[tuple[float, str]], top: float) -> bool:
    """Whether the page has more than a running head above a table."""
    return sum(len(t) for y, t in items if y < top) > 80
