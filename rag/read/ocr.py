"""OCR: reading the text of page images (scans, photos of pages) with Tesseract, offline.

Tesseract runs as the `tesseract` program of Debian's `tesseract-ocr` package, called directly
with `subprocess` rather than through pytesseract or OCRmyPDF: one call per page image, fed as
an uncompressed PGM on stdin (no temporary files), with a timeout that kills a page that hangs,
its word confidences read from the TSV output (so a page read upside down or sideways can be
read again with orientation detection), and one `--list-langs` check. pytesseract wraps the
same program with temporary files and adds nothing we use; OCRmyPDF writes a new PDF with a
text layer and needs Ghostscript and more, while we only need each page's text.

OCR'd text is cached on disk by the file's SHA-256, the page and the settings that shape the
text, so a rebuild never reads the same scan twice; pages are written to the cache as they are
read, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UnreadableDocument
from .common import Extracted, reason

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
TESSERACT = "tesseract"  # the program; looked up on PATH at each use
# PDF pages are drawn for OCR at Tesseract's recommended 300 dpi, or at a scanned page's own
# resolution when it is lower, but never below MIN_DPI.
DPI = 300
MIN_DPI = 200
# No page image larger than this is decoded or drawn (about A3 at 500 dpi). Image files and
# PDF pictures that declare more (decompression bombs: a few KB declaring gigapixels) are
# refused before decoding; PDF pages that would draw larger are drawn at a lower resolution.
MAX_PIXELS = 50_000_000
PAGE_TIMEOUT = 120.0  # seconds one page may take before its Tesseract is killed
# Below this mean word confidence (0-100) a page is read again with orientation detection
# (psm 1), which costs about a third more: upright pages score 90+, sideways ones below 40.
RETRY_BELOW = 60.0
# Bumped when the text made of a page image changes (rendering, options, layout), so cached
# pages of the old kind are not reused.
VERSION = 1
# Tesseract sometimes starts a paragraph mid-sentence: one that ends without a stop, followed by
# one that starts in lower case, are one paragraph.
_UNFINISHED = re.compile(r"[\w,;\u2014-]$")
_LANGUAGES = re.compile(r"^[A-Za-z_]+(?:\+[A-Za-z_]+)*$")

PageProgress = Callable[[int, int], None]  # (pages done, pages to read) in one file


@dataclass(frozen=True)
class Options:
    """How scans are read: Tesseract's languages ("eng", "eng+deu"), the cache folder (None:
    no cache), how many pages are read at once, and who hears of each page read."""

    languages: str = "eng"
    cache: Path | None = None
    workers: int = 1
    progress: PageProgress | None = None


class Timeout(Exception):
    """Tesseract took longer than PAGE_TIMEOUT on one page."""


def missing_message(languages: str = "eng") -> str | None:
    """Why OCR cannot run here (one line naming the package to install), or None if it can."""
    if not _LANGUAGES.match(languages):
        return f"OCR language setting {languages!r} is not like 'eng' or 'eng+deu'"
    binary = shutil.which(TESSERACT)
    if binary is None:
        return (
            "Tesseract OCR is not installed (needed for scans and images): install the Debian "
            "package tesseract-ocr (sudo apt-get install tesseract-ocr, or make tesseract)"
        )
    have = _installed_languages(binary)
    lacking = [lang for lang in languages.split("+") if lang not in have]
    if lacking:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in lacking)
        return (
            f"Tesseract has no {'+'.join(lacking)} language data (OCR languages {languages}): "
            f"install the Debian package {packages}"
        )
    return None


def require(languages: str = "eng") -> str:
    """The path of the `tesseract` program; UnreadableDocument with the reason if unusable."""
    problem = missing_message(languages)
    if problem:
        raise UnreadableDocument(problem)
    return shutil.which(TESSERACT) or TESSERACT


@lru_cache(maxsize=8)
def _installed_languages(binary: str) -> frozenset[str]:
    try:
        done = subprocess.run(
            [binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    lines = (done.stdout + done.stderr).splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and " " not in line.strip())


def recognize(image: Image, languages: str = "eng", dpi: int | None = None) -> tuple[str, float]:
    """(text, mean word confidence 0-100) of one page image; raises Timeout.

    Paragraphs are separated by a blank line, the lines of a paragraph joined by spaces (a
    line ending in a hyphen joins the next without one), so sentences are not cut at line
    ends. A page that reads poorly is read again with orientation detection, for pages turned
    sideways or upside down; the better reading is kept.
    """
    binary = require(languages)
    if image.mode != "L":
        image = grayscale(image)
    # A PGM (a header and the gray bytes): nothing to compress, and one copy of the pixels.
    data = b"P5 %d %d 255\n" % image.size + image.tobytes()
    text, confidence = _run(binary, data, languages, dpi, psm=3)
    if confidence < RETRY_BELOW:
        turned, turned_confidence = _run(binary, data, languages, dpi, psm=1)
        if turned_confidence > confidence:
            text, confidence = turned, turned_confidence
    return text, confidence


def _run(binary: str, data: bytes, languages: str, dpi: int | None, psm: int) -> tuple[str, float]:
    command = [binary, "stdin", "stdout", "-l", languages, "--psm", str(psm)]
    if dpi:
        command += ["--dpi", str(dpi)]
    # One thread per Tesseract: its OpenMP threads make it several times slower on a busy
    # machine (measured 1.8 s against 9.5 s a page on 2 shared cores); pages run side by side.
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}
    try:
        done = subprocess.run(
            [*command, "tsv"],
            input=data,
            capture_output=True,
            timeout=PAGE_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:  # run() has killed it
        raise Timeout(f"Tesseract took over {PAGE_TIMEOUT:.0f} s on a page") from error
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UnreadableDocument(f"Tesseract failed: {message[-1] if message else done.returncode}")
    return tsv_text(done.stdout.decode("utf-8", "replace"))


def tsv_text(tsv: str) -> tuple[str, float]:
    """Text and mean word confidence from Tesseract's TSV output."""
    paragraphs: dict[tuple[str, str], dict[str, list[str]]] = {}
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5" or not cells[11].strip():
            continue
        _, _, block, par, line, _, _, _, _, _, conf, word = cells[:12]
        paragraphs.setdefault((block, par), {}).setdefault(line, []).append(word.strip())
        with contextlib.suppress(ValueError):
            confidences.append(float(conf))
    out: list[str] = []
    for lines in paragraphs.values():
        first = next(iter(lines.values()))[0]
        text = out.pop() if out and _UNFINISHED.search(out[-1]) and first[:1].islower() else ""
        for words in lines.values():
            line = " ".join(words)
            joint = "" if not text or (text.endswith("-") and len(text) > 1) else " "
            text += joint + line
        out.append(text)
    mean = sum(confidences) / len(confidences) if confidences else 0.0
    return "\n\n".join(out), mean


def grayscale(image: Image) -> Image:
    """The image as 8-bit gray on white (transparent parts become white, not black)."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        image = white
    return image.convert("L")


# -- the cache ---------------------------------------------------------------------------------


def _cache_folder(options: Options, sha256: str) -> Path | None:
    if options.cache is None:
        return None
    shape = f"v{VERSION} {options.languages} dpi{MIN_DPI}-{DPI} max{MAX_PIXELS}".encode()
    return Path(options.cache) / sha256[:2] / sha256 / hashlib.sha256(shape).hexdigest()[:16]


def _cached(folder: Path | None, page: int) -> str | None:
    if folder is None:
        return None
    try:
        return (folder / f"page-{page + 1:05d}.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _store(folder: Path | None, page: int, text: str) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"page-{page + 1:05d}.txt"
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass  # a read-only or full cache only costs reading the page again next time


# -- reading many pages ------------------------------------------------------------------------


def read_pages(
    sha256: str,
    pages: list[int],
    draw: Callable[[int], tuple[Image, int | None]],
    options: Options,
) -> tuple[dict[int, str], int]:
    """The OCR'd text of the given pages of one file ({page index: text}) and how many pages
    timed out. `draw(page)` makes a page's image and its resolution; pages found in the cache
    are not drawn. Pages are drawn one at a time as workers come free (`options.workers` read
    at once, one more drawn), so a 500-page scan takes the memory of a few pages."""
    folder = _cache_folder(options, sha256)
    texts: dict[int, str] = {}
    todo = []
    for page in pages:
        cached = _cached(folder, page)
        if cached is None:
            todo.append(page)
        else:
            texts[page] = cached
    done = len(texts)
    if not todo:
        return texts, 0  # nothing to wait for: no progress to show
    if options.progress:
        options.progress(done, len(pages))
    require(options.languages)  # before drawing anything: one clear reason, once
    timeouts = 0
    for page, result in _in_parallel(todo, draw, options):
        if isinstance(result, Timeout):
            timeouts += 1
            texts[page] = ""  # not cached: the next full build tries again
        else:
            texts[page] = result
            _store(folder, page, result)
        done += 1
        if options.progress:
            options.progress(done, len(pages))
    return texts, timeouts


def _in_parallel(
    pages: Iterable[int], draw: Callable[[int], tuple[Image, int | None]], options: Options
) -> Iterator[tuple[int, str | Timeout]]:
    """(page, text or Timeout) for each page, in order, with at most `workers` at once."""
    workers = max(1, options.workers)

    def one(image: Image, dpi: int | None) -> str | Timeout:
        try:
            return recognize(image, options.languages, dpi)[0]
        except Timeout as error:
            return error
        finally:
            image.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr") as pool:
        pending: list[tuple[int, Future]] = []
        for page in pages:
            if len(pending) >= workers:
                first, future = pending.pop(0)
                yield first, future.result()
            image, dpi = draw(page)  # drawn here, in order, so at most `workers` are held
            pending.append((page, pool.submit(one, image, dpi)))
        for page, future in pending:
            yield page, future.result()


# -- image files -------------------------------------------------------------------------------


def read_image(data: bytes, options: Options | None = None) -> Extracted:
    """The OCR'd text of an image file; each frame of a multi-page TIFF is a page."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    options = options or Options()
    try:
        with warnings.catch_warnings():
            # Sizes are checked below against MAX_PIXELS, before anything is decoded.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1) if image.format == "TIFF" else 1
    except PILImage.DecompressionBombError as error:  # declared far above even PIL's limit
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise UnreadableDocument(bomb(int(found.group(1)) if found else 0)) from error
    except UnidentifiedImageError as error:
        raise UnreadableDocument("not an image this app can read (unknown or damaged)") from error
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's errors on damaged headers
        raise UnreadableDocument(f"damaged image: {reason(error)}") from error
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise UnreadableDocument(bomb(width * height, (width, height)))
    dpi = image.info.get("dpi")
    resolution = round(float(dpi[0])) if dpi and 30 <= float(dpi[0]) <= 2400 else None

    def draw(frame: int) -> tuple[Image, int | None]:
        try:
            image.seek(frame)
            if image.size[0] * image.size[1] > MAX_PIXELS:
                raise UnreadableDocument(bomb(image.size[0] * image.size[1], image.size))
            return grayscale(ImageOps.exif_transpose(image)), resolution
        except UnreadableDocument:
            raise
        except Exception as error:  # Pillow raises many types on damaged image data
            raise UnreadableDocument(f"damaged image: {reason(error)}") from error

    sha256 = hashlib.sha256(data).hexdigest()
    texts, timeouts = read_pages(sha256, list(range(frames)), draw, options)
    image.close()
    ordered = [texts[i].strip() for i in range(frames)]
    if not any(ordered):
        if timeouts:
            raise UnreadableDocument(f"OCR timed out (over {PAGE_TIMEOUT:.0f} s a page)")
        raise UnreadableDocument("no text found in the image (OCR)")
    if frames == 1:
        return ordered[0], "", ()
    return join_pages(ordered)


def join_pages(texts: list[str]) -> Extracted:
    """Pages' texts joined by blank lines, with where each page starts."""
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + 2
    return "\n\n".join(texts), "", tuple(starts)


def bomb(pixels: int, size: tuple[int, int] | None = None) -> str:
    """The reason an image is refused for its size."""
    what = f"{size[0]:,}×{size[1]:,} pixels" if size else f"{pixels:,} pixels"
    return (
        f"image of {what}, more than {MAX_PIXELS // 1_000_000} megapixels: refused unread "
        "(a decompression bomb?)"
    )
