"""Tables as text that keeps their structure: every row written with its column headers, one
line a row, so that a passage holding any row also holds what its cells mean."""

from __future__ import annotations

import re
from collections.abc import Sequence

_SPACE = re.compile(r"\s+")
# A header row is made of labels: short cells, not all numbers.
_NUMBER = re.compile(r"^[\s\d.,%$€£()+\-–]*$")


def cell(text: object) -> str:
    """A cell's text on one line ("" for an empty or missing cell)."""
    return _SPACE.sub(" ", str(text or "")).strip()


def looks_like_header(row: Sequence[str]) -> bool:
    """Whether a first row labels the columns: some text, no cell a bare number or long."""
    filled = [c for c in row if c]
    return (
        len(filled) >= max(1, len(row) // 2)
        and not any(_NUMBER.match(c) for c in filled)
        and all(len(c) <= 80 for c in filled)
    )


def rows_text(rows: Sequence[Sequence[object]], header: Sequence[object] | None = None) -> str:
    """A table as lines: "Header: value; Header: value" for each row.

    `header` names the columns; without it the first row does when it looks like labels, and
    otherwise cells are written as they are, separated by " | ". Empty cells are left out;
    a row with no header for a cell writes the cell alone.
    """
    table = [[cell(c) for c in row] for row in rows]
    table = [row for row in table if any(row)]
    if not table:
        return ""
    names = [cell(h) for h in header] if header is not None else None
    if names is None and len(table) > 1 and looks_like_header(table[0]):
        names, table = table[0], table[1:]
    lines = []
    for row in table:
        if names:
            parts = [
                f"{names[i]}: {value}" if i < len(names) and names[i] else value
                for i, value in enumerate(row)
                if value
            ]
            lines.append("; ".join(parts))
        else:
            lines.append(" | ".join(value for value in row if value))
    return "\n".join(lines)
