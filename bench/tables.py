"""Table questions: the seeds plus four generated tables (two DOCX, two HTML) and 12 questions,
each about one cell of one row. Reports, per question, the rank of the first passage holding
the row's cells, and of the first holding them on one line with the asked columns' headers;
with --answers, whether the answer (default model) states the cell and cites the table.

    python -m bench.tables [--answers] [OUT_DIR]

To measure before a change, run it in an older tree: `git archive HEAD rag prompts seeds bench
| tar -x -C OLD`, copy this file into OLD/bench, then `cd OLD && PYTHONPATH=. python -m
bench.tables`. See docs/QUALITY.md, "Tables".
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import docx

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
DEPARTMENTS = ["Roads", "Parks", "Libraries", "Police", "Fire", "Water"]
BUDGET = [
    (str(year), d, f"${(i * 7 + j * 3) % 9 + 1}.{(i + j) % 10} million", str(20 + i * 5 + j))
    for i, year in enumerate(range(2019, 2025))
    for j, d in enumerate(DEPARTMENTS)
]
PARKS = [
    (name, f"{(i * 37) % 90 + 10},{i}00", f"{(i * 53) % 90 + 10},{i}50", str(1950 + i * 4),
     str(i * 3 + 2))
    for i, name in enumerate(
        ["Riverside Park", "Hilltop Gardens", "Old Mill Green", "Lakeview Commons", "Cedar Grove",
         "Harbor Point", "Maple Meadow", "Stone Bridge Park", "Willow Banks", "Sunset Ridge",
         "Fox Hollow", "Birch Fields", "Quarry Park", "Elm Square", "North Woods"]
    )
]  # fmt: skip
STAFF = [
    (name, role, f"Room {100 + i * 7}", f"555-01{i:02d}")
    for i, (name, role) in enumerate(
        [("Ann Lee", "Records clerk"), ("Bob Ray", "Treasurer"), ("Cy Moss", "Planning officer"),
         ("Di Park", "Building inspector"), ("Ed Hunt", "City engineer"),
         ("Flo Kim", "Tax assessor"), ("Gus Ortiz", "Parks supervisor"),
         ("Hal Roy", "Fire marshal"), ("Ida Chen", "Librarian"), ("Jo Vance", "Water manager"),
         ("Kit Ward", "IT manager"), ("Lu Gray", "Events coordinator"),
         ("Max Dunn", "Legal counsel"), ("Nia Fox", "HR director"),
         ("Oz Reed", "Procurement officer"), ("Pat Cole", "Court clerk"),
         ("Quinn Bell", "Traffic engineer"), ("Ray Hart", "Housing officer"),
         ("Sue Lane", "Health inspector"), ("Tom Wu", "Budget analyst")]
    )
]  # fmt: skip
TRANSIT = [
    (str(n), start, end, str(5 + (n * 7) % 25), f"{5 + n % 3}:{(n * 13) % 60:02d}")
    for n, (start, end) in enumerate(
        [("Central Station", "Airport"), ("Harbor", "University"), ("Old Town", "Stadium"),
         ("Riverside", "Hospital"), ("North Mall", "Ferry Terminal"), ("West End", "Tech Park"),
         ("Lakeside", "City Hall"), ("Market Square", "Zoo"), ("South Gate", "Library"),
         ("Eastfield", "Racecourse"), ("Hill Top", "Beach"), ("Mill Lane", "Cathedral"),
         ("Docklands", "Museum"), ("Park Road", "Prison"), ("Kings Cross", "Outlet Village")],
        start=1,
    )
]  # fmt: skip
_B = {(year, d): row for row in BUDGET for year, d in [row[:2]]}
# (question, file, row, headers of the asked columns, the answer's cell)
QUESTIONS = [
    ("What was the Roads budget in 2023?", "budget.docx", _B["2023", "Roads"],
     ("Year", "Department", "Budget"), "2.4"),
    ("How much money did the Police department get in 2020?", "budget.docx",
     _B["2020", "Police"], ("Year", "Department", "Budget"), "8.4"),
    ("How many staff did the Water department have in 2022?", "budget.docx",
     _B["2022", "Water"], ("Year", "Department", "Staff"), "40"),
    ("How many visitors did Hilltop Gardens have in 2024?", "parks.html", PARKS[1],
     ("Park", "Visitors 2024"), PARKS[1][2]),
    ("When did Willow Banks open?", "parks.html", PARKS[8], ("Park", "Opened"), PARKS[8][3]),
    ("How big is Quarry Park in hectares?", "parks.html", PARKS[12], ("Park", "Area (ha)"),
     PARKS[12][4]),
    ("What is the phone number of the records clerk?", "staff.docx", STAFF[0],
     ("Role", "Phone"), STAFF[0][3]),
    ("Which room is the health inspector in?", "staff.docx", STAFF[18], ("Role", "Office"),
     STAFF[18][2]),
    ("Who is the traffic engineer?", "staff.docx", STAFF[16], ("Name", "Role"), STAFF[16][0]),
    ("How often does the bus from Lakeside to City Hall run?", "transit.html", TRANSIT[6],
     ("From", "To", "Every (minutes)"), TRANSIT[6][3]),
    ("When is the first bus of route 12?", "transit.html", TRANSIT[11], ("Route", "First bus"),
     TRANSIT[11][4]),
    ("Which route goes from Docklands to the Museum?", "transit.html", TRANSIT[12],
     ("Route", "From", "To"), TRANSIT[12][0]),
]  # fmt: skip


def write_docx(path: Path, intro: tuple[str, str, str], header: tuple, rows: list) -> None:
    document = docx.Document()
    document.add_heading(intro[0], level=1)
    document.add_paragraph(intro[1])
    table = document.add_table(rows=len(rows) + 1, cols=len(header))
    for r, row in enumerate([header, *rows]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph(intro[2])
    document.save(path)


def write_html(path: Path, intro: tuple[str, str, str], header: tuple, rows: list) -> None:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    path.write_text(
        f"<html><head><title>{intro[0]}</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<main><h1>{intro[0]}</h1><p>{intro[1]}</p><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table><p>{intro[2]}</p></main></body></html>",
        encoding="utf-8",
    )


def corpus(folder: Path) -> Path:
    """The seeds and the four tables, written into `folder`."""
    shutil.copytree(SEEDS, folder)
    write_docx(
        folder / "budget.docx",
        ("City budget by department", "The council sets each department's budget every year.",
         "Figures are in US dollars."),
        ("Year", "Department", "Budget", "Staff"), BUDGET,
    )  # fmt: skip
    write_html(
        folder / "parks.html",
        ("Park visitors", "The parks department counts visitors at every gate.",
         "Counts are rounded."),
        ("Park", "Visitors 2023", "Visitors 2024", "Opened", "Area (ha)"), PARKS,
    )  # fmt: skip
    write_docx(
        folder / "staff.docx",
        ("Staff directory", "Who to call at city hall.", "Phones are answered on weekdays."),
        ("Name", "Role", "Office", "Phone"), STAFF,
    )  # fmt: skip
    write_html(
        folder / "transit.html",
        ("Bus routes", "The city runs fifteen bus routes.", "Timetables change in winter."),
        ("Route", "From", "To", "Every (minutes)", "First bus"), TRANSIT,
    )  # fmt: skip
    return folder


def rank(hits: list, source: str, needles: tuple[str, ...], one_line: bool = False) -> int | None:
    """The rank of the first passage of `source` holding all `needles` (on one of its lines)."""
    for n, hit in enumerate(hits, 1):
        texts = hit.chunk.text.splitlines() if one_line else [hit.chunk.text]
        if hit.chunk.source == source and any(all(v in t for v in needles) for t in texts):
            return n
    return None


def main(argv: list[str]) -> int:
    from rag import Config, Engine

    answers = "--answers" in argv
    args = [a for a in argv if a != "--answers"]
    out = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="bench-tables-"))
    shutil.rmtree(out / "corpus", ignore_errors=True)
    folder = corpus(out / "corpus")
    engine = Engine(Config.load(index_dir=out / "index", corpus=folder))
    began = time.perf_counter()
    engine.build([folder], full=True)
    built = time.perf_counter() - began
    passages: dict[str, int] = {}
    for passage in engine.index.all_chunks():
        if not passage.source.endswith(".txt"):
            passages[passage.source] = passages.get(passage.source, 0) + 1
    results = []
    for question, source, row, headers, cell in QUESTIONS:
        hits = engine.search(question, k=10)
        result = {
            "question": question,
            "row": rank(hits, source, row),
            "row_line": rank(hits, source, (*row, *headers), one_line=True),
        }
        if answers:
            answer = engine.answer(question)
            result["answer"] = answer.text
            result["right"] = cell.lstrip("$").split(" million")[0] in answer.text
            result["cites_table"] = any(c.source == source for c in answer.citations)
        results.append(result)
        print(json.dumps(result), flush=True)

    def share(key: str, k: int) -> str:
        found = sum(1 for r in results if r[key] is not None and r[key] <= k)
        return f"{found}/{len(results)}"

    summary = {f"{key}@{k}": share(key, k) for key in ("row", "row_line") for k in (1, 4)}
    summary.update(passages=passages, build_s=round(built, 1))
    if answers:
        right = sum(1 for r in results if r["right"] and r["cites_table"])
        summary["right_and_cited"] = f"{right}/{len(results)}"
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
