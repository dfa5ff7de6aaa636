"""Scans made on the spot for the OCR tests and benchmark: text typeset with a real font on
page images (as a scanner would deliver them), and PDFs of those images with no text layer."""

from __future__ import annotations

import io
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
)
DPI = 200  # a common office-scanner setting
WIDTH, HEIGHT = 8.5, 11  # inches: US letter


def font_file() -> Path:
    """A TrueType font installed here (Debian's fonts-dejavu-core is enough)."""
    for name in FONTS:
        if Path(name).is_file():
            return Path(name)
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", "serif:fontformat=TrueType"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found and Path(found).is_file():
            return Path(found)
    raise RuntimeError("no TrueType font found: install fonts-dejavu-core (make tesseract)")


def pages(
    text: str,
    dpi: int = DPI,
    points: float = 11,
    new_page_at: Sequence[str] = (),
    columns: int = 80,
) -> list[tuple[Image.Image, str]]:
    """`text` typeset on white page images, with the text each page shows: paragraphs wrapped
    at `columns` characters, a blank line between them, one-inch margins; a new page starts
    when one is full or before a paragraph that begins with one of `new_page_at`."""
    font = ImageFont.truetype(str(font_file()), round(points * dpi / 72))
    width, height, margin = round(WIDTH * dpi), round(HEIGHT * dpi), dpi
    step = round(points * 1.45 * dpi / 72)
    out: list[tuple[Image.Image, list[str]]] = []
    page, draw, y = None, None, margin
    for paragraph in text.split("\n\n"):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        lines = textwrap.wrap(paragraph, columns, break_on_hyphens=False, break_long_words=False)
        if page is not None and paragraph.startswith(tuple(new_page_at)):
            page = None
        for line in lines:
            if page is None or y + step > height - margin:
                page = Image.new("L", (width, height), 255)
                draw, y = ImageDraw.Draw(page), margin
                out.append((page, []))
            draw.text((margin, y), line, font=font, fill=0)
            out[-1][1].append(line)
            y += step
        y += step  # the blank line between paragraphs
    return [(image, " ".join(lines)) for image, lines in out]


def pdf(images: Sequence[Image.Image], dpi: int = DPI) -> bytes:
    """A PDF of page images, with no text layer (as a scanner writes one)."""
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buffer.getvalue()


def png(image: Image.Image, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()
