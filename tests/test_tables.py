"""Tables keep their structure: each row written with its column headers, never cut away from
them, found and cited whole."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import docx
import lxml.html
import pytest
from docx.oxml import OxmlElement

from rag import Chunk, Config, Engine, Hit
from rag.chunk import chunk, is_table_row
from rag.evidence import split
from rag.read import _all_text, read
from rag.read.tables import html_tables, join_headers, looks_like_header, rows_text

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
BUDGET = [
    ("2023", "$4.5 million", "Roads"),
    ("2023", "$2.1 million", "Parks"),
    ("2024", "$3.8 million", "Libraries"),
]
ROADS_2023 = "Year: 2023; Budget: $4.5 million; Department: Roads"
VISITORS_2024 = "Park: Riverside Park; Visitors 2024: 182,000; Opened: 1998"
QUESTION = "What was the budget for Roads in 2023?"


def docx_bytes(*blocks: str | list[tuple[str, ...]], header_rows: int = 0) -> bytes:
    """A .docx of paragraphs (str) and tables (lists of rows), the first `header_rows` rows of
    each table marked to repeat as its header."""
    document = docx.Document()
    for block in blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
            continue
        table = document.add_table(rows=len(block), cols=len(block[0]))
        for r, row in enumerate(block):
            for c, value in enumerate(row):
                table.cell(r, c).text = value
            if r < header_rows:
                table.rows[r]._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def budget_docx() -> bytes:
    return docx_bytes(
        "City budget 2023-2024",
        "The council approved the spending plan in March after a long debate.",
        [("Year", "Budget", "Department"), *BUDGET],
        "The plan is reviewed every spring.",
    )


PARKS_HTML = """<!doctype html><html><head><title>Park visitors</title></head><body>
<nav><a href="/">Home</a> <a href="/parks">Parks</a></nav>
<main><h1>Park visitors</h1>
<p>The parks department counts visitors at every gate, every day of the year.</p>
<table>
  <caption>Visitors by park</caption>
  <thead>
    <tr><th rowspan="2">Park</th><th colspan="2">Visitors</th><th rowspan="2">Opened</th></tr>
    <tr><th>2023</th><th>2024</th></tr>
  </thead>
  <tbody>
    <tr><td>Riverside Park</td><td>175,000</td><td>182,000</td><td>1998</td></tr>
    <tr><td>Hilltop Gardens</td><td>64,000</td><td>70,500</td><td>2005</td></tr>
    <tr><td>Old Mill Green</td><td colspan="2">closed for repairs</td><td>1974</td></tr>
  </tbody>
</table>
<p>Counts are rounded to the nearest five hundred visitors.</p>
</main></body></html>"""


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# The formatter


def test_rows_are_written_with_the_first_row_as_their_headers() -> None:
    assert rows_text([("Year", "Budget", "Department"), *BUDGET]).splitlines() == [
        ROADS_2023,
        "Year: 2023; Budget: $2.1 million; Department: Parks",
        "Year: 2024; Budget: $3.8 million; Department: Libraries",
    ]


def test_years_heading_columns_of_amounts_are_headers() -> None:
    rows = [("Department", "2023", "2024"), ("Roads", "$4.5 million", "$5.0 million")]
    assert rows_text(rows) == "Department: Roads; 2023: $4.5 million; 2024: $5.0 million"
    corner = [("", "2023", "2024"), ("Roads", "4.5", "5.0")]
    assert rows_text(corner) == "Roads; 2023: 4.5; 2024: 5.0"


@pytest.mark.parametrize(
    "rows",
    [
        [("Roads", "$4.5 million", "2023"), ("Parks", "$2.1 million", "2024")],
        [("2023", "Roads", "North"), ("2024", "Parks", "South")],
        [
            (
                "A long sentence that is far too long to be a label for a column of anything at all",
                "x",
                "y",
            ),
            ("a", "b", "c"),
        ],
    ],  # fmt: skip
)
def test_a_first_row_of_data_is_not_taken_for_headers(rows: list[tuple[str, ...]]) -> None:
    assert not looks_like_header(rows[0], rows[1:])
    assert rows_text(rows).splitlines() == [" | ".join(row) for row in rows]


def test_empty_cells_are_left_out_and_ragged_rows_keep_their_cells() -> None:
    rows = [
        ("Name", "Role", "Phone"),
        ("Ann", "", "555-0101"),
        ("Bob", "Clerk"),
        ("Cy", "Chair", "555-0199", "on leave"),
        ("", "", ""),
    ]
    assert rows_text(rows).splitlines() == [
        "Name: Ann; Phone: 555-0101",
        "Name: Bob; Role: Clerk",
        "Name: Cy; Role: Chair; Phone: 555-0199; on leave",
    ]


def test_cells_are_put_on_one_line() -> None:
    assert rows_text([("Item", "Note"), ("Bridge", "Repaired\n  in  May")]) == (
        "Item: Bridge; Note: Repaired in May"
    )


def test_a_header_repeated_inside_the_table_is_dropped() -> None:
    rows = [("Year", "Budget"), ("2023", "$4.5m"), ("Year", "Budget"), ("2024", "$3.8m")]
    assert rows_text(rows).splitlines() == [
        "Year: 2023; Budget: $4.5m",
        "Year: 2024; Budget: $3.8m",
    ]


def test_given_headers_name_the_columns() -> None:
    assert rows_text([("2023", "4.5")], header=("Year", "Budget ($m)")) == (
        "Year: 2023; Budget ($m): 4.5"
    )
    assert rows_text([("2023", "4.5", "Roads")], header=("Year", "", "Department")) == (
        "Year: 2023; 4.5; Department: Roads"
    )


def test_two_columns_without_headers_are_names_and_values() -> None:
    rows = [("Population", "8,000"), ("Area", "12 km2"), ("Mayor", "")]
    assert rows_text(rows, header=()).splitlines() == [
        "Population: 8,000",
        "Area: 12 km2",
        "Mayor",
    ]


def test_an_empty_table_gives_no_text() -> None:
    assert rows_text([]) == "" and rows_text([("", " "), ()]) == ""


def test_header_rows_join_into_one_name_a_column() -> None:
    rows = [("Park", "Visitors", "Visitors", "Opened"), ("Park", "2023", "2024", "Opened")]
    assert join_headers(rows) == ["Park", "Visitors 2023", "Visitors 2024", "Opened"]
    assert join_headers([("A", "B"), ("", "c", "d")]) == ["A", "B c", "d"]


# DOCX


def test_docx_table_rows_are_written_with_their_headers_between_the_paragraphs(
    tmp_path: Path,
) -> None:
    document = read(write(tmp_path / "budget.docx", budget_docx()), tmp_path)
    assert document.text.splitlines() == [
        "City budget 2023-2024",
        "The council approved the spending plan in March after a long debate.",
        ROADS_2023,
        "Year: 2023; Budget: $2.1 million; Department: Parks",
        "Year: 2024; Budget: $3.8 million; Department: Libraries",
        "The plan is reviewed every spring.",
    ]


def test_docx_rows_marked_as_header_name_the_columns_and_merged_cells_count_once(
    tmp_path: Path,
) -> None:
    data = docx_bytes(
        [
            ("Park", "Visitors", "Visitors"),
            ("", "2023", "2024"),
            ("Riverside", "175,000", "182,000"),
            ("Old Mill", "closed", "closed"),
            ("Total", "175,000", "182,000"),
        ],
        header_rows=2,
    )
    document = docx.Document(io.BytesIO(data))
    table = document.tables[0]
    table.cell(0, 1).merge(table.cell(0, 2))  # "Visitors" over both years
    table.cell(3, 1).merge(table.cell(3, 2))  # closed both years
    table.cell(0, 1).text = "Visitors"
    table.cell(3, 1).text = "closed"
    table.cell(0, 0).merge(table.cell(1, 0))  # "Park" over both header rows
    table.cell(0, 0).text = "Park"
    buffer = io.BytesIO()
    document.save(buffer)
    text = read(write(tmp_path / "parks.docx", buffer.getvalue()), tmp_path).text
    assert text.splitlines() == [
        "Park: Riverside; Visitors 2023: 175,000; Visitors 2024: 182,000",
        "Park: Old Mill; Visitors 2023: closed",
        "Park: Total; Visitors 2023: 175,000; Visitors 2024: 182,000",
    ]


def test_docx_layout_table_gives_its_paragraphs_and_its_inner_table_rows(tmp_path: Path) -> None:
    document = docx.Document()
    layout = document.add_table(rows=1, cols=2)
    layout.cell(0, 0).text = "Notes from the finance committee."
    inner = layout.cell(0, 1).add_table(rows=2, cols=2)
    for c, (name, value) in enumerate([("Year", "2023"), ("Budget", "$4.5 million")]):
        inner.cell(0, c).text = name
        inner.cell(1, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    text = read(write(tmp_path / "layout.docx", buffer.getvalue()), tmp_path).text
    # (A cell always holds a paragraph: the empty one above the inner table is a blank line.)
    assert [line for line in text.splitlines() if line] == [
        "Notes from the finance committee.",
        "Year: 2023; Budget: $4.5 million",
    ]


def test_a_row_whose_first_header_starts_a_credit_line_is_kept(tmp_path: Path) -> None:
    # "Source: ..." alone is a photo credit that cleaning drops; as a table row it is data.
    rows = [("Source", "Amount"), ("Federal grant", "$2 million"), ("State grant", "$1 million")]
    text = read(
        write(tmp_path / "grants.docx", docx_bytes("Grants received.", rows)), tmp_path
    ).text
    assert text.splitlines() == [
        "Grants received.",
        "Source: Federal grant; Amount: $2 million",
        "Source: State grant; Amount: $1 million",
    ]


# HTML


def test_html_table_rows_are_written_with_their_headers(tmp_path: Path) -> None:
    document = read(write(tmp_path / "parks.html", PARKS_HTML), tmp_path)
    assert document.text.splitlines() == [
        "Park visitors",
        "The parks department counts visitors at every gate, every day of the year.",
        "Visitors by park",
        "Park: Riverside Park; Visitors 2023: 175,000; Visitors 2024: 182,000; Opened: 1998",
        "Park: Hilltop Gardens; Visitors 2023: 64,000; Visitors 2024: 70,500; Opened: 2005",
        "Park: Old Mill Green; Visitors 2023: closed for repairs; Opened: 1974",
        "Counts are rounded to the nearest five hundred visitors.",
    ]


def test_html_fallback_extraction_keeps_the_rows_too() -> None:
    page = lxml.html.fromstring(PARKS_HTML)
    html_tables(page)
    lines = [line.strip() for line in _all_text(page).splitlines() if line.strip()]
    assert (
        "Park: Riverside Park; Visitors 2023: 175,000; Visitors 2024: 182,000; Opened: 1998"
        in lines
    )


def test_html_side_headers_title_rows_and_tables_inside_layout_tables(tmp_path: Path) -> None:
    page = """<html><body><table width="100%"><tr><td><a href="/">Home</a></td><td>
    <h1>About the town</h1>
    <p>The town lies on the river, where the old mill stood for two centuries.</p>
    <table><tr><th>Population</th><td>8,000</td></tr><tr><th>Area</th><td>12 km<sup>2</sup></td>
    </tr></table>
    <table><tr><td colspan="3">Market stalls (2024)</td></tr><tr><th>Name</th><th>Age</th></tr>
      <tr><th>Ann</th><th>31</th></tr></table>
    <table><tr><td>Lists<br>and<br>breaks</td><td>12</td><td>14</td></tr>
      <tr><td>Dots</td><td>13</td><td>15</td></tr></table>
    </td></tr></table></body></html>"""
    lines = read(write(tmp_path / "town.html", page), tmp_path).text.splitlines()
    assert "Home" not in lines  # the layout's navigation cell is left to trafilatura
    assert lines[lines.index("Population: 8,000") - 1 :] == [
        "The town lies on the river, where the old mill stood for two centuries.",
        "Population: 8,000",
        "Area: 12 km2",
        "Market stalls (2024)",
        "Name: Ann; Age: 31",
        "Lists and breaks | 12 | 14",
        "Dots | 13 | 15",
    ]


def test_docx_title_row_across_the_table_is_a_line_of_its_own(tmp_path: Path) -> None:
    data = docx_bytes([("Budget by year", "", ""), ("Year", "Budget", "Department"), *BUDGET])
    document = docx.Document(io.BytesIO(data))
    table = document.tables[0]
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Budget by year"
    buffer = io.BytesIO()
    document.save(buffer)
    text = read(write(tmp_path / "titled.docx", buffer.getvalue()), tmp_path).text
    assert text.splitlines()[:2] == ["Budget by year", ROADS_2023]


# Passages


def words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def test_a_table_row_is_one_unit_even_when_it_holds_sentences() -> None:
    row = "Project: Bridge; Status: Approved. Work starts in May. Done by June; Cost: $2m"
    assert is_table_row(row) and not is_table_row("Note: this is a remark; it has no table.")
    text = f"Intro sentence one. Intro sentence two.\n{row}\nAfter the table."
    spans = chunk(text, words, target=8, overlap=0, limit=40)
    assert [text[a:b] for a, b in spans] == [
        "Intro sentence one. Intro sentence two.",
        row,
        "After the table.",
    ]


def test_a_row_longer_than_a_passage_is_cut_between_its_cells() -> None:
    row = "; ".join(f"Column {i}: value {i} of the row" for i in range(12))
    spans = chunk(row, words, target=20, overlap=0, limit=20)
    pieces = [row[a:b] for a, b in spans]
    assert len(pieces) > 1 and "; ".join(pieces) == row
    assert all(piece.startswith("Column ") and piece.endswith("of the row") for piece in pieces)


def test_the_evidence_for_an_answer_takes_a_row_whole() -> None:
    row = "Project: Bridge; Status: Approved. Work starts in May.; Cost: $2m"
    text = f"Capital projects. The list is updated monthly.\n{row}"
    hit = Hit(
        Chunk(id=0, source="p.docx", title="Projects", start=0, end=len(text), text=text), 1.0
    )
    assert [sentence.text for sentence in split([hit])] == [
        "Capital projects.",
        "The list is updated monthly.",
        row,
    ]


# End to end


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("tables")
    corpus = root / "corpus"
    shutil.copytree(SEEDS, corpus)
    write(corpus / "budget.docx", budget_docx())
    write(corpus / "parks.html", PARKS_HTML)
    # A table long enough for several passages; its notes hold sentences to tempt a cut.
    rows = [("Project", "Year", "Budget", "Department", "Status")] + [
        (f"Project {n:02d}", str(2000 + n), f"${n}.5 million", f"Ward {n % 7}",
         "Approved. Work starts in May." if n % 2 else "Waiting for review.")
        for n in range(1, 41)
    ]  # fmt: skip
    write(corpus / "projects.docx", docx_bytes("Capital projects by ward.", rows))
    config = Config.load(
        index_dir=root / "index", corpus=corpus, model="smollm2-135m", max_tokens=64
    )
    built = Engine(config)
    built.build([corpus])
    return built


def test_search_finds_the_row_with_its_headers(engine: Engine) -> None:
    top = engine.search(QUESTION, k=4)[0]
    assert top.chunk.source == "budget.docx" and ROADS_2023 in top.chunk.text.splitlines()
    top = engine.search("How many visitors did Riverside Park have in 2024?", k=4)[0]
    assert top.chunk.source == "parks.html" and VISITORS_2024.split(";")[0] in top.chunk.text
    assert "Visitors 2024: 182,000" in top.chunk.text


def test_answer_about_a_table_row_cites_the_table(engine: Engine, tmp_path: Path) -> None:
    answer = engine.answer(QUESTION)
    assert answer.outcome in ("answered", "refused", "withheld")
    assert (answer.outcome == "answered") == bool(answer.citations)
    original = read(write(tmp_path / "budget.docx", budget_docx()), tmp_path).original
    for n, citation in enumerate(answer.citations, start=1):
        assert citation.number == n and f"[{n}]" in answer.text
        assert citation.source == "budget.docx"
        assert original[citation.start : citation.end] == citation.text
    assert any(ROADS_2023 in hit.chunk.text for hit in answer.passages)


def test_every_passage_of_a_long_table_holds_whole_rows_with_headers(engine: Engine) -> None:
    passages = [c for c in engine.index.all_chunks() if c.source == "projects.docx"]
    assert len(passages) >= 3
    rows = set()
    for passage in passages:
        for line in passage.text.splitlines():
            if line == "Capital projects by ward.":
                continue
            assert line.startswith("Project: Project ") and "; Status: " in line, line
            assert line.endswith(("Work starts in May.", "Waiting for review.")), line
            rows.add(line)
    assert len(rows) == 40
