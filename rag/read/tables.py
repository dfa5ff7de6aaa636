"""Tables as text that keeps their structure: every row written with its column headers, one
line a row, so that a passage holding any row also holds what its cells mean."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docx.table import Table, _Cell
    from lxml.html import HtmlElement

_SPACE = re.compile(r"\s+")
# A cell that states a quantity: a number, an amount, a date, a measure ("$4.5 million").
_QUANTITY = re.compile(r"^[(+\-\u2013\u2212~<>\u2248\u00b1]?\s*[$\u20ac\u00a3\u00a5]?\s*\d")
# A year, a span of years or a year with words ("2023", "FY2023-24", "2023 budget"): a label
# when it heads a column of amounts.
_YEAR = re.compile(r"^(?:FY\s?)?(?:1[5-9]|20|21)\d\d(?:[-\u2013/]\d{2,4})?(?:\s+[^\W\d].*)?$")
_MAX_LABEL = 80
# A cell longer than this (or holding a heading) makes its table page layout, not data.
_MAX_DATA_CELL = 1000
# Of a table's text, this share or more in links makes it navigation, not data.
_MAX_LINK_SHARE = 0.8
_MAX_SPAN = 200
_HTML_BREAKS = ("br", "p", "div", "li", "dt", "dd", "tr", "h1", "h2", "h3", "h4", "h5", "h6")


def cell(text: object) -> str:
    """A cell's text on one line ("" for an empty or missing cell)."""
    return _SPACE.sub(" ", str(text or "")).strip()


def looks_like_header(row: Sequence[str], below: Sequence[Sequence[str]] = ()) -> bool:
    """Whether a first row labels the columns of the rows `below` it.

    Its cells must be short and at least half of them filled. Then each column votes, as
    csv.Sniffer does: a label above quantities is for it (a year above amounts too); a number
    above quantities, or above text, is against; text above text says nothing. It looks like
    a header unless the votes against outnumber those for.
    """
    filled = [c for c in row if c]
    if not filled or 2 * len(filled) < len(row) or any(len(c) > _MAX_LABEL for c in filled):
        return False
    votes = 0
    for i, label in enumerate(row):
        column = [r[i] for r in below if i < len(r) and r[i]]
        if not label or not column:
            continue
        quantities = all(_QUANTITY.match(value) for value in column)
        if not _QUANTITY.match(label):
            votes += quantities
        elif _YEAR.match(label):
            if quantities:
                votes += -1 if any(_YEAR.match(value) for value in column) else 1
        else:
            votes -= 1
    return votes >= 0


def join_headers(rows: Sequence[Sequence[object]]) -> list[str]:
    """One name a column from several header rows, top to bottom: [["Budget", "Budget"],
    ["2023", "2024"]] gives ["Budget 2023", "Budget 2024"]. A name repeated down a column (a
    cell spanning rows) counts once; one repeated across columns (spanning columns) names each.
    """
    width = max((len(row) for row in rows), default=0)
    names = []
    for i in range(width):
        parts: list[str] = []
        for row in rows:
            name = cell(row[i]) if i < len(row) else ""
            if name and (not parts or parts[-1] != name):
                parts.append(name)
        names.append(" ".join(parts))
    return names


def rows_text(rows: Sequence[Sequence[object]], header: Sequence[object] | None = None) -> str:
    """A table as lines: "Header: value; Header: value" for each row.

    `header` names the columns (an empty one says the table has no header); without it the
    first row does when it looks like labels (see `looks_like_header`). Empty cells are left
    out, a cell with no name is written alone, and a row repeating the header (printed again
    on each page) is dropped. Without names, a table of two columns is read as names and
    values ("Population: 8,000"), and wider rows have their cells separated by " | ".
    """
    table = [[cell(c) for c in row] for row in rows]
    table = [row for row in table if any(row)]
    if not table:
        return ""
    if header is not None:
        names = [cell(h) for h in header]
    elif len(table) > 1 and looks_like_header(table[0], table[1:]):
        names, table = table[0], table[1:]
    else:
        names = []
    if any(names):
        own = [name for name in names if name]
        lines = (_named(row, names) for row in table if [v for v in row if v] != own)
    elif all(len(row) <= 2 for row in table):
        lines = (
            f"{row[0]}: {row[1]}" if len(row) == 2 and all(row) else " ".join(row).strip()
            for row in table
        )
    else:
        lines = (" | ".join(value for value in row if value) for row in table)
    return "\n".join(line for line in lines if line)


def _named(row: Sequence[str], names: Sequence[str]) -> str:
    return "; ".join(
        f"{names[i]}: {value}" if i < len(names) and names[i] else value
        for i, value in enumerate(row)
        if value
    )


# HTML


def html_tables(page: HtmlElement) -> None:
    """Rewrite a page's tables in place as blocks that text extraction keeps line by line.

    A data table becomes a <div> of <p>s: its caption, then its rows as `rows_text` writes
    them, named by the <thead> rows or the leading rows of <th> cells (else by the first row
    when it looks like labels). A layout table (role=presentation, a single row or column,
    holding another table, a heading or a long text, or mostly links) is left alone, unless
    it holds a data table: then it becomes plain <div>s, so the rows stay on their lines.
    """
    tables = page.xpath("//table")
    holders = [bool(table.xpath(".//table")) for table in tables]
    # The innermost first: an outer table meets its inner tables already rewritten.
    for table, holder in zip(reversed(tables), reversed(holders)):
        lines = None if holder else _html_lines(table)
        if lines is None:
            # Left as it is (text extraction has its own ways with page layout), unless it
            # holds rewritten tables, whose rows extraction would join into one cell's line.
            if table.xpath(".//div[@data-rows]"):
                for part in table.iter("thead", "tbody", "tfoot", "tr", "td", "th", "caption"):
                    part.tag = "div"
                table.tag = "div"
            continue
        table.clear(keep_tail=True)
        table.tag = "div"
        table.set("data-rows", "")
        for line in lines:
            paragraph = table.makeelement("p", {})
            paragraph.text = line
            table.append(paragraph)


def _html_lines(table: HtmlElement) -> list[str] | None:
    """A data table's lines (its caption and title rows first), or None for a layout table."""
    if table.get("role", "").strip().lower() in ("presentation", "none"):
        return None
    if table.xpath(".//h1|.//h2|.//h3|.//h4|.//h5|.//h6"):
        return None
    text = len(table.text_content().strip())
    links = sum(len(link.text_content().strip()) for link in table.iter("a"))
    if text and links >= _MAX_LINK_SHARE * text:
        return None
    # (number, text, is a header cell) at each (row, column) a cell covers.
    grid: dict[tuple[int, int], tuple[int, str, bool]] = {}
    trs = table.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")
    in_head = [tr.getparent().tag == "thead" for tr in trs]
    for r, tr in enumerate(trs):
        c = 0
        for td in tr.xpath("./td|./th"):
            while (r, c) in grid:
                c += 1
            for node in td.iter(*_HTML_BREAKS):
                node.tail = " " + (node.tail or "")
            entry = (len(grid), cell(td.text_content()), td.tag == "th")
            if len(entry[1]) > _MAX_DATA_CELL:
                return None
            columns, rows = _span(td.get("colspan")), _span(td.get("rowspan"))
            for dr in range(min(rows, len(trs) - r)):
                for dc in range(columns):
                    grid[r + dr, c + dc] = entry
            c += columns
    width = max((c for _, c in grid), default=-1) + 1
    # (in <thead>, the entry at each column) of the rows with some text.
    every = [(in_head[r], [grid.get((r, c)) for c in range(width)]) for r in range(len(trs))]
    table_rows = [(head, row) for head, row in every if any(e and e[1] for e in row)]
    if len(table_rows) < 2 or max(len({e for e in row if e and e[1]}) for _, row in table_rows) < 2:
        return None
    caption = table.find("caption")
    titles = [cell(caption.text_content())] if caption is not None else []
    # Leading rows of one cell across the whole table are titles, not headers or data.
    while len(table_rows) > 2 and all(entry is table_rows[0][1][0] for entry in table_rows[0][1]):
        titles.append(table_rows.pop(0)[1][0][1])
    heads = 0
    for head, row in table_rows:
        cells = [entry for entry in row if entry and entry[1]]
        if not (head or all(entry[2] for entry in cells)):
            break
        heads += 1
    if heads == len(table_rows):  # every row of <th>: markup that says nothing
        heads = 0
    body = [
        [
            ""
            if entry is None or (c > 0 and row[c - 1] is entry)  # a cell spanning columns
            else entry[1]
            for c, entry in enumerate(row)
        ]
        for _, row in table_rows[heads:]
    ]
    header: list[str] | tuple[()] | None = None
    if heads:
        header = join_headers([[e[1] if e else "" for e in row] for _, row in table_rows[:heads]])
    elif {c for _, row in table_rows for c, e in enumerate(row) if e and e[1] and e[2]} == {0}:
        header = ()  # <th> only down the side: the rows name themselves
    return [line for line in titles if line] + rows_text(body, header).splitlines()


def _span(value: str | None) -> int:
    try:
        return min(max(int(value or 1), 1), _MAX_SPAN)
    except ValueError:
        return 1


# DOCX


def docx_lines(table: Table, cell_lines: Callable[[_Cell], list[str]]) -> list[str]:
    """A Word table as lines.

    A data table's title rows (one cell across the table), then its rows as `rows_text` writes
    them, named by the rows marked to repeat as the header on each page (w:tblHeader), else by
    the first row when it looks like labels. A layout table (a single row or column, or
    holding another table or a long text) gives its cells' lines in reading order.
    `cell_lines` reads a cell's paragraphs and tables.
    """
    from docx.oxml.ns import qn

    rows = [row.cells for row in table.rows]  # a merged cell at every grid column it spans
    lines: dict[object, list[str]] = {}
    for row in rows:
        for part in row:
            if part._tc not in lines:
                lines[part._tc] = cell_lines(part)
    texts = {tc: cell(" ".join(own)) for tc, own in lines.items()}
    widest = max((len({part._tc for part in row if texts[part._tc]}) for row in rows), default=0)
    filled = sum(any(texts[part._tc] for part in row) for row in rows)
    if (
        filled < 2
        or widest < 2
        or any(part.tables for row in rows for part in row)
        or any(len(text) > _MAX_DATA_CELL for text in texts.values())
    ):
        done: set[object] = set()
        out = []
        for row in rows:
            for part in row:
                if part._tc not in done:
                    done.add(part._tc)
                    out.extend(lines[part._tc])
        return out
    marked = []
    for row in table.rows:
        marks = row._tr.trPr.findall(qn("w:tblHeader")) if row._tr.trPr is not None else []
        marked.append(bool(marks) and marks[0].get(qn("w:val"), "1") not in ("0", "false", "off"))
    titles = []
    # Leading rows of one cell across the whole table are titles, not headers or data.
    while len(rows) > 2 and all(part._tc is rows[0][0]._tc for part in rows[0]):
        titles.append(texts[rows.pop(0)[0]._tc])
        marked.pop(0)
    heads = next((n for n, mark in enumerate(marked) if not mark), len(marked))
    if heads == len(rows):
        heads = 0
    body = [
        [
            "" if c > 0 and part._tc is row[c - 1]._tc else texts[part._tc]
            for c, part in enumerate(row)
        ]
        for row in rows[heads:]
    ]
    header = join_headers([[texts[p._tc] for p in row] for row in rows[:heads]]) if heads else None
    return [title for title in titles if title] + rows_text(body, header).splitlines()
