"""Reading: finding documents and turning real files of every supported type into Documents."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.pdfgen import canvas

from rag.errors import RagError, UnreadableDocument
from rag.read import decode, find_files, read

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def read_file(path: Path):
    return read(path, path.parent)


def pdf_bytes(*pages: str, title: str | None = None, only_shapes: bool = False) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    if title:
        pdf.setTitle(title)
    for text in pages:
        if only_shapes:
            pdf.rect(72, 600, 200, 100, fill=1)
        else:
            pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def encrypted(data: bytes, user_password: str, **options: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, **options)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def docx_bytes(title: str = "") -> bytes:
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Field notes on otters", level=1)
    document.add_paragraph("River otters hunt fish at dusk.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Species"
    table.cell(0, 1).text = "Habitat"
    table.cell(1, 0).text = "Lutra lutra"
    table.cell(1, 1).text = "Rivers and coasts"
    document.add_paragraph("Sea otters float on their backs.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def reason(path: Path) -> str:
    with pytest.raises(UnreadableDocument) as caught:
        read_file(path)
    return str(caught.value)


# Seeds


def test_all_seeds_read_with_titles_sources_and_hashes() -> None:
    documents = [read(path, root) for path, root in find_files([SEEDS])]
    assert [d.source for d in documents] == sorted(p.name for p in SEEDS.glob("*.txt"))
    by_number = {d.source[:3]: d for d in documents}
    assert by_number["000"].title.startswith("\u2018Aggression against Belarus")
    assert by_number["002"].title == "Belarus Says It Will Go to War If Russia is Directly Attacked"
    assert (
        by_number["004"].title
        == "Top Putin Ally Threatens \u2018Cruel\u2019 Attacks on New Country"
    )
    for document in documents:
        raw = Path(document.path).read_bytes()
        assert Path(document.path).is_absolute()
        assert document.sha256 == hashlib.sha256(raw).hexdigest()
        assert document.original == raw.decode("utf-8")
        assert len(document.offsets) == len(document.text) + 1
        assert document.pages == () and document.page_at(0) is None
        assert 0 < len(document.title) <= 121
    assert "h\u0430ve" in by_number["003"].original and "have" in by_number["003"].text


# Text and Markdown


def test_markdown_title_comes_from_the_first_heading(tmp_path: Path) -> None:
    path = write(tmp_path / "notes" / "otters.md", "\n\n## River *Otters*  \n\nThey eat fish.\n")
    document = read(path, tmp_path)
    assert document.source == "notes/otters.md"
    assert document.title == "River Otters"
    assert document.text == "## River *Otters*\n\nThey eat fish."


def test_markdown_front_matter_title(tmp_path: Path) -> None:
    path = write(tmp_path / "a.markdown", "---\ntitle: 'Beaver dams'\ndate: 2024\n---\nBody.\n")
    assert read_file(path).title == "Beaver dams"


def test_long_first_line_makes_a_short_title(tmp_path: Path) -> None:
    path = write(tmp_path / "long.txt", "word " * 100 + "\n\nBody.\n")
    title = read_file(path).title
    assert title.endswith("\u2026") and len(title) <= 121 and title.startswith("word word")


def test_file_of_only_chrome_has_nothing_left(tmp_path: Path) -> None:
    path = write(tmp_path / "chrome.txt", "Advertisement\nShare this article\nwww.example.com\n")
    assert "boilerplate" in reason(path)


# Encodings


def test_latin1_file_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path / "cafe.txt", "caf\u00e9 na\u00efve".encode("latin-1"))
    assert read_file(path).original == "caf\u00e9 na\u00efve"
    french = "Le caf\u00e9 est tr\u00e8s na\u00eff, \u00e0 c\u00f4t\u00e9 de la for\u00eat."
    assert read_file(write(tmp_path / "fr.txt", french.encode("cp1252"))).text == french


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u042d\u0442\u043e"
         " \u043e\u0431\u044b\u0447\u043d\u044b\u0439 \u0440\u0443\u0441\u0441\u043a\u0438\u0439"
         " \u0442\u0435\u043a\u0441\u0442 \u043e \u043f\u043e\u0433\u043e\u0434\u0435.", "cp1251"),
        ("Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144, mo\u017ce jutro"
         " p\u00f3jdziemy.", "cp1250"),
    ],
)  # fmt: skip
def test_other_single_byte_encodings_are_detected(text: str, encoding: str) -> None:
    assert decode(text.encode(encoding)) == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_unicode_with_byte_order_mark(tmp_path: Path, encoding: str) -> None:
    text = "Otters \u2013 \u00e9t\u00e9 \u043f\u0440\u0438\u0432\u0435\u0442 \u2603\nSecond line."
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    document = read_file(write(tmp_path / "u.txt", data))
    assert document.original == text
    assert document.title.startswith("Otters")


def test_a_few_bad_bytes_in_unicode_text_are_replaced(tmp_path: Path) -> None:
    text = "Caf\u00e9 \u2013 na\u00efve r\u00e9sum\u00e9 of the \u00e9t\u00e9 season.\n" * 5
    stray = text.encode("utf-8").replace(b"season", b"seas\xffn", 1)
    assert read_file(write(tmp_path / "stray.txt", stray)).original == text.replace(
        "season", "seas\ufffdn", 1
    )
    cut = "Otters \u2603 swim.".encode("utf-16")[:-1]
    assert read_file(write(tmp_path / "cut.txt", cut)).original == "Otters \u2603 swim\ufffd"


def test_utf16_without_byte_order_mark(tmp_path: Path) -> None:
    text = "Plain English text saved as UTF-16 by an old editor.\n"
    assert read_file(write(tmp_path / "le.txt", text.encode("utf-16-le"))).original == text


def test_binary_junk_is_not_text(tmp_path: Path) -> None:
    junk = random.Random(1).randbytes(4096)
    assert reason(write(tmp_path / "junk.txt", junk)) == "binary file, not text"
    controls = bytes(random.Random(2).choice(b"\x01\x02\x03\x04\x05abc") for _ in range(2000))
    assert reason(write(tmp_path / "ctrl.md", controls)) == "binary file, not text"
    assert reason(write(tmp_path / "nul.txt", b"text\x00with a nul")) == "binary file, not text"


@pytest.mark.parametrize("data", [b"", b"   \n\t\n", "  \n".encode("utf-16")])
def test_empty_files(tmp_path: Path, data: bytes) -> None:
    assert reason(write(tmp_path / "empty.txt", data)) == "empty file"


def test_unsupported_type_says_so(tmp_path: Path) -> None:
    assert reason(write(tmp_path / "notes.xyz", "hello")) == "unsupported file type .xyz"
    assert reason(write(tmp_path / "README", "hello")) == "unsupported file type (no suffix)"


# HTML


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Otters of Europe</title>
<style>.menu { color: red }</style>
<script>var trackingMenuScript = "load";</script></head>
<body>
<header><a href="/">SiteLogo</a></header>
<nav><ul><li><a href="/">HomeMenu</a></li><li><a href="/news">NewsMenu</a></li></ul></nav>
<article>
<h1>The Eurasian otter</h1>
<p>The Eurasian otter lives along rivers, lakes and rocky coasts across Europe and Asia.</p>
<p>It hunts mostly fish at night and marks its territory with spraints on stones.</p>
<script>document.write("injectedScriptText")</script>
</article>
<footer>FooterCopyrightText</footer>
</body></html>"""


def test_html_keeps_the_article_and_drops_menus_and_scripts(tmp_path: Path) -> None:
    document = read_file(write(tmp_path / "otter.html", PAGE))
    assert document.title == "Otters of Europe"
    assert "The Eurasian otter lives along rivers" in document.text
    assert "marks its territory with spraints" in document.text
    for chrome in ["HomeMenu", "NewsMenu", "SiteLogo", "trackingMenuScript", "injectedScript"]:
        assert chrome not in document.text
    assert "color: red" not in document.text and "FooterCopyrightText" not in document.text


def test_html_title_falls_back_to_h1_and_charset_is_honoured(tmp_path: Path) -> None:
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        "</head><body><h1>Caf\u00e9 culture</h1><p>Un caf\u00e9 tr\u00e8s na\u00eff.</p>"
        "</body></html>"
    )
    document = read_file(write(tmp_path / "cafe.htm", page.encode("latin-1")))
    assert document.title == "Caf\u00e9 culture"
    assert "Un caf\u00e9 tr\u00e8s na\u00eff." in document.text


def test_html_with_stray_control_characters(tmp_path: Path) -> None:
    # lxml refused to move "\x1b" when dropping the <script> it follows.
    page = PAGE.replace("rocky coasts", "rocky\x01 coasts").replace(
        "</script>\n</a", "</script>\x1b\n</a"
    )
    assert "rocky coasts across Europe" in read_file(write(tmp_path / "c.html", page)).text


def test_html_without_text(tmp_path: Path) -> None:
    page = "<html><head><script>x()</script></head><body><nav>Menu</nav></body></html>"
    assert reason(write(tmp_path / "blank.html", page)) == "no text"


# PDF


def test_pdf_pages_are_recorded(tmp_path: Path) -> None:
    data = pdf_bytes("Otters live in rivers and eat fish.", "Beavers build dams.", title="Notes")
    document = read_file(write(tmp_path / "animals.pdf", data))
    assert document.title == "Notes"
    assert document.original == "Otters live in rivers and eat fish.\n\nBeavers build dams."
    assert document.pages == (0, len("Otters live in rivers and eat fish.") + 2)
    assert document.page_at(document.original.index("Otters")) == 1
    assert document.page_at(document.original.index("Beavers")) == 2
    assert document.page_at(document.original.index("dams")) == 2


def test_pdf_without_title_uses_its_first_line(tmp_path: Path) -> None:
    document = read_file(write(tmp_path / "a.pdf", pdf_bytes("Annual report on otters")))
    assert document.title == "Annual report on otters"


def test_encrypted_pdf_needs_a_password(tmp_path: Path) -> None:
    data = encrypted(pdf_bytes("Secret otter locations."), "secret")
    assert reason(write(tmp_path / "locked.pdf", data)).startswith("encrypted PDF")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_encrypted_with_an_empty_password_opens(tmp_path: Path, algorithm: str) -> None:
    data = encrypted(pdf_bytes("Open otter facts."), "", owner_password="o", algorithm=algorithm)
    assert read_file(write(tmp_path / "open.pdf", data)).text == "Open otter facts."


def test_truncated_pdf(tmp_path: Path) -> None:
    data = pdf_bytes("Otters live in rivers.", "Beavers build dams.")
    assert reason(write(tmp_path / "cut.pdf", data[: len(data) // 2])).startswith(
        "truncated or damaged PDF"
    )


def test_pdf_without_a_text_layer_or_a_scanned_page(tmp_path: Path) -> None:
    data = pdf_bytes("", only_shapes=True)
    assert reason(write(tmp_path / "shapes.pdf", data)) == (
        "PDF has no text (no text layer, and no scanned page to read)"
    )


def test_a_file_named_pdf_that_is_not_one(tmp_path: Path) -> None:
    assert reason(write(tmp_path / "fake.pdf", "just text")) == "not a PDF (no %PDF header)"


# DOCX


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    document = read_file(write(tmp_path / "notes.docx", docx_bytes(title="Otter field guide")))
    assert document.title == "Otter field guide"
    assert document.text == (
        "Field notes on otters\nRiver otters hunt fish at dusk.\n"
        "Species: Lutra lutra; Habitat: Rivers and coasts\nSea otters float on their backs."
    )


def test_docx_without_title_uses_its_first_paragraph(tmp_path: Path) -> None:
    assert read_file(write(tmp_path / "n.docx", docx_bytes())).title == "Field notes on otters"


def test_zip_renamed_docx(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a word document")
    path = write(tmp_path / "fake.docx", buffer.getvalue())
    assert reason(path) == "not a valid .docx (zip without word/document.xml)"
    assert (
        reason(write(tmp_path / "text.docx", "plain text")) == "not a valid .docx (not a zip file)"
    )


def test_damaged_docx(tmp_path: Path) -> None:
    data = docx_bytes()
    assert reason(write(tmp_path / "half.docx", data[: len(data) // 2])).startswith("damaged .docx")


# Damaged files never raise anything but UnreadableDocument


@pytest.mark.parametrize("name", ["a.pdf", "a.docx", "a.html", "a.txt"])
def test_damaged_files_are_read_or_rejected_with_a_reason(tmp_path: Path, name: str) -> None:
    good = {
        "a.pdf": pdf_bytes("Otters live in rivers.", "Beavers build dams."),
        "a.docx": docx_bytes("Guide"),
        "a.html": PAGE.encode(),
        "a.txt": (SEEDS / "003_420ac862ca752e05.txt").read_bytes(),
    }[name]
    rng = random.Random(name)
    for trial in range(25):
        data = bytearray(good)
        for _ in range(rng.randint(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = write(tmp_path / f"{trial}{name}", bytes(data))
        try:
            read_file(path)
        except UnreadableDocument as error:
            assert str(error) and "\n" not in str(error)


# Finding files


def test_find_files_walks_folders_skipping_hidden_ones(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for name in [
        "b.txt",
        "A.MD",
        "sub/deeper/c.html",
        "sub/d.pdf",
        ".hidden/e.txt",
        ".git/objects/f.txt",
        "sub/.g.txt",
        "sub/~$lock.docx",
        "song.mp3",
    ]:
        write(root / name, "x")
    found = find_files([root])
    assert [(file.relative_to(root).as_posix(), r) for file, r in found] == [
        ("A.MD", root),
        ("b.txt", root),
        ("sub/d.pdf", root),
        ("sub/deeper/c.html", root),
    ]
    assert all(file.is_absolute() for file, _ in found)


def test_find_files_takes_named_files_as_they_are(tmp_path: Path) -> None:
    song = write(tmp_path / "song.mp3", b"ID3")
    note = write(tmp_path / "sub" / "note.txt", "hello")
    found = find_files([str(song), note, tmp_path / "sub"])
    assert found == [(song, tmp_path), (note, note.parent)]
    assert reason(song) == "unsupported file type .mp3"


def test_find_files_rejects_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="no such file or folder: .*missing"):
        find_files([tmp_path / "missing"])
