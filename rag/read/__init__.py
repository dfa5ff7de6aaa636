"""Reading: find the documents under the given paths and turn each file into a Document."""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..clean import clean
from ..errors import RagError, UnreadableDocument
from ..types import Document
from . import ocr, pdf
from .common import Extracted
from .common import reason as _reason

if TYPE_CHECKING:
    from docx.document import Document as WordDocument
    from docx.table import _Cell
    from lxml.html import HtmlElement

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", *ocr.IMAGE_SUFFIXES}
TITLE_CHARS = 120
# A .docx is a zip whose XML parts python-docx unpacks and parses in memory: one whose XML
# unpacks to more than this (a zip bomb: gigabytes of text in a few hundred kilobytes) is
# refused unopened. Pictures are not counted; they are never read.
MAX_DOCX_XML = 256 * 1024 * 1024

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SAMPLE = 100_000  # characters inspected by the binary and encoding checks
_MAX_CONTROL_SHARE = 0.05
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # not tab, newlines or ESC (ANSI logs)
# A symbol between two letters means a wrong single-byte guess ("ma¿e" is cp1250 "może").
_SYMBOL_IN_WORD = re.compile(r"[^\W\d_][\u00a1-\u00bf\u00d7\u00f7][^\W\d_]")
_MULTIBYTE_UTF8 = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w:.-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FRONT_MATTER_TITLE = re.compile(
    r"\A---[ \t]*\n(?:(?!---).*\n)*?title:[ \t]*[\"']?(.+?)[\"']?[ \t]*\n"
)
_MARKDOWN_MARKS = re.compile(r"^[#>\s]+|[#\s]+$|[*`]+|(?<!\w)_+|_+(?!\w)")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# HTML elements that hold site chrome or code, never the page's text.
_HTML_CHROME = (
    "//script|//style|//noscript|//template|//nav|//aside|//form|//iframe|//svg|//button"
    "|//header[not(ancestor::article or ancestor::main)]"
    "|//footer[not(ancestor::article or ancestor::main)]"
)
_HTML_BLOCKS = (
    "p", "div", "br", "li", "tr", "table", "section", "article", "main", "blockquote", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "dt", "dd", "figcaption", "hr",
)  # fmt: skip


def find_files(paths: Sequence[Path | str]) -> list[tuple[Path, Path]]:
    """(absolute file, root) for every document under the given files and folders.

    Folders are walked recursively in sorted order, skipping hidden files and folders (so `.git`
    too) and keeping supported types only; a file named explicitly is kept whatever its type, so
    `read` can say why it is skipped. Raises RagError for a path that does not exist.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(os.path.abspath(Path(given).expanduser()))
        if not path.exists():
            raise RagError(f"no such file or folder: {given}")
        pairs = [(f, path) for f in _walk(path)] if path.is_dir() else [(path, path.parent)]
        for file, root in pairs:
            if file not in seen:
                seen.add(file)
                found.append((file, root))
    return found


def read(path: Path | str, root: Path | str, ocr_options: ocr.Options | None = None) -> Document:
    """Read one file into a Document; raise UnreadableDocument with a one-line reason if not.

    Scanned PDF pages and images are OCR'd as `ocr_options` say (default: English, no cache).
    """
    path = Path(os.path.abspath(path))
    suffix = path.suffix.lower()
    extract = _READERS.get(suffix)
    if extract is None:
        raise UnreadableDocument(f"unsupported file type {suffix or '(no suffix)'}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableDocument(f"cannot open file: {error.strerror or error}") from error
    if not data or data.isspace():
        raise UnreadableDocument("empty file")
    sha256 = hashlib.sha256(data).hexdigest()
    if extract in _OCR_READERS:
        original, title, pages = extract(data, ocr_options)
    else:
        original, title, pages = extract(data)
    del data  # the bytes are not needed past here; a large file should not be held twice
    if not original.strip():
        raise UnreadableDocument(
            "empty file" if suffix in {".txt", ".md", ".markdown"} else "no text"
        )
    text, offsets = clean(original)
    if not text:
        raise UnreadableDocument("no text left after removing boilerplate")
    return Document(
        source=_source(path, Path(os.path.abspath(root))),
        path=str(path),
        title=_shorten(title) or _first_line(text) or path.stem,
        original=original,
        text=text,
        offsets=offsets,
        pages=pages,
        sha256=sha256,
    )


def decode(data: bytes, hint: str | None = None) -> str:
    """Decode a text file: BOM first, then UTF-8, the `hint` encoding, cp1252 or a detected one.

    Raises UnreadableDocument("binary file, not text") for bytes that are not text.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _decode_mostly(data[len(bom) :], encoding)
            if text is None:
                raise UnreadableDocument(f"damaged {encoding} text (many invalid bytes)")
            return _text_or_binary(text)
    if b"\x00" in data:
        # NUL bytes: UTF-16 without a byte-order mark, or not text at all.
        encoding = _utf16_without_bom(data)
        text = _decode_mostly(data, encoding) if encoding else None
        if text is None:
            raise UnreadableDocument("binary file, not text")
        return _text_or_binary(text)
    text = _decode_mostly(data, "utf-8")
    if text is not None and "\ufffd" in text:
        # Valid UTF-8 sequences seldom happen by chance in other encodings: when they outnumber
        # the bad bytes, those are damage in a UTF-8 file, not a different encoding.
        bad = text.count("\ufffd") - data.count("\ufffd".encode())
        if sum(1 for _ in _MULTIBYTE_UTF8.finditer(data)) <= bad:
            text = None
    if text is not None:
        return _text_or_binary(text)
    for encoding in (hint, "cp1252"):
        if not encoding:
            continue
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        if encoding == hint or _looks_western(text):
            return _text_or_binary(text)
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise UnreadableDocument("binary file, not text")
    return _text_or_binary(str(best))


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            # "~$x.docx" are Word's lock files, not documents.
            if name.startswith((".", "~$")) or Path(name).suffix.lower() not in SUPPORTED:
                continue
            file = Path(directory, name)
            if file.is_file():
                files.append(file)
    return files


def _source(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _text_or_binary(text: str) -> str:
    sample = text[:_SAMPLE]
    if len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise UnreadableDocument("binary file, not text")
    return text.removeprefix("\ufeff")


def _decode_mostly(data: bytes, encoding: str) -> str | None:
    """Decode; a few invalid bytes (a cut-off last character, a stray byte) become U+FFFD."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode(encoding, errors="replace")
    return text if text.count("\ufffd") <= max(2, len(text) // 1000) else None


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[: 2 * _SAMPLE]
    half = max(len(sample) // 2, 1)
    even, odd = sample[0::2].count(0) / half, sample[1::2].count(0) / half
    if len(data) % 2 == 0 and odd > 0.3 and even < 0.05:
        return "utf-16-le"
    if len(data) % 2 == 0 and even > 0.3 and odd < 0.05:
        return "utf-16-be"
    return None


def _looks_western(text: str) -> bool:
    """Whether a cp1252 reading is plausible: few non-ASCII letters, no symbols inside words."""
    sample = text[:_SAMPLE]
    letters = sum(1 for c in sample if c.isalpha())
    foreign = sum(1 for c in sample if c.isalpha() and not c.isascii())
    return foreign <= 0.25 * letters and _SYMBOL_IN_WORD.search(sample) is None


def _read_text(data: bytes) -> Extracted:
    return decode(data), "", ()


def _read_markdown(data: bytes) -> Extracted:
    text = decode(data)
    match = _FRONT_MATTER_TITLE.match(text)
    return text, match.group(1) if match else "", ()


def _read_html(data: bytes) -> Extracted:
    import copy

    import lxml.html

    from . import tables

    match = _META_CHARSET.search(data[:4096])
    markup = decode(data, hint=match.group(1).decode("ascii", "replace") if match else None)
    # lxml refuses str input that still declares an encoding, and control characters.
    markup = _XML_ILLEGAL.sub("", _XML_DECLARATION.sub("", markup, count=1))
    if not markup.strip():
        return "", "", ()
    try:
        page = lxml.html.fromstring(markup)
        title = page.findtext(".//title") or ""
        if not title.strip():
            title = next((h.text_content() for h in page.iter("h1")), "")
        for element in page.xpath(_HTML_CHROME):
            element.drop_tree()
        # Before either extraction, so both keep each table row on its line with its headers.
        tables.html_tables(page)
        # trafilatura may prune the tree it is given, so it gets a copy.
        text = _main_text(copy.deepcopy(page)) or _all_text(page)
    except Exception as error:  # lxml's ParserError and friends on broken markup
        raise UnreadableDocument(f"damaged HTML: {_reason(error)}") from error
    return text, title, ()


def _main_text(page: HtmlElement) -> str:
    """The page's main text by trafilatura, or "" when it finds none."""
    import trafilatura

    try:
        text = trafilatura.extract(
            page, favor_recall=True, include_comments=False, include_tables=True
        )
    except Exception:  # trafilatura fails on some odd trees; _all_text is the fallback
        return ""
    return text or ""


def _all_text(page: HtmlElement) -> str:
    """Every text node left on the page, one line per block element."""
    for head in page.xpath("//head"):
        head.drop_tree()
    for element in page.iter(*_HTML_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    return page.text_content()


def _read_docx(data: bytes) -> Extracted:
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableDocument("not a valid .docx (an old .doc or a password-protected file)")
    if not data.startswith(b"PK"):
        raise UnreadableDocument("not a valid .docx (not a zip file)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            # zipfile never reads more than a part's declared size, so the sum bounds memory.
            unpacked = sum(
                info.file_size
                for info in archive.infolist()
                if info.filename.endswith((".xml", ".rels"))
            )
    except Exception as error:  # zipfile raises BadZipFile, NotImplementedError, ValueError...
        raise UnreadableDocument(f"damaged .docx: {_reason(error)}") from error
    if unpacked > MAX_DOCX_XML:
        raise UnreadableDocument(
            f"not a valid .docx (its text unpacks to {unpacked / 2**20:,.0f} MB, more than "
            f"{MAX_DOCX_XML // 2**20} MB: a zip bomb?)"
        )
    if "word/document.xml" not in names:
        raise UnreadableDocument("not a valid .docx (zip without word/document.xml)")
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_docx_lines(document))
        title = document.core_properties.title or ""
    except Exception as error:  # python-docx and lxml errors on damaged parts
        raise UnreadableDocument(f"damaged .docx: {_reason(error)}") from error
    return "\n".join(lines), title, ()


def _docx_lines(container: WordDocument | _Cell) -> list[str]:
    """Paragraph texts in document order; each table as `tables.docx_lines` writes it."""
    from docx.table import Table

    from . import tables

    lines: list[str] = []
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(tables.docx_lines(block, _docx_lines))
        else:
            lines.append(block.text)
    return lines


_READERS: dict[str, Callable[[bytes], Extracted]] = {
    ".txt": _read_text,
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": pdf.read_pdf,
    **dict.fromkeys(ocr.IMAGE_SUFFIXES, ocr.read_image),
    ".docx": _read_docx,
}
# Readers that may OCR: they take the OCR options given to `read` too.
_OCR_READERS = (pdf.read_pdf, ocr.read_image)


def _first_line(text: str) -> str:
    """The first line that reads as a title; a one-word kicker ("Russia") above a headline is
    passed over unless it is a Markdown heading."""
    lines = [line for line in text.splitlines()[:20] if any(c.isalnum() for c in line)][:3]
    for line in lines:
        if line.startswith("#") or len(line.split()) > 1:
            return _shorten(line)
    return _shorten(lines[0]) if lines else ""


def _shorten(title: str) -> str:
    """A title on one line: Markdown marks removed, cut near TITLE_CHARS at a word boundary."""
    title = _MARKDOWN_LINK.sub(r"\1", title)
    title = _MARKDOWN_MARKS.sub("", " ".join(title.split())).strip()
    if len(title) <= TITLE_CHARS:
        return title
    cut = title.rfind(" ", 0, TITLE_CHARS)
    return title[: cut if cut > TITLE_CHARS // 2 else TITLE_CHARS].rstrip(" ,;:") + "\u2026"
