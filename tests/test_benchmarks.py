"""docs/BENCHMARKS.md describes what ships: every section records the settings it was measured
at, and they must be the code's defaults today."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from bench import report  # noqa: E402 - the benchmarks live beside the package, not in it

DOC = PROJECT / "docs" / "BENCHMARKS.md"


def test_every_benchmark_section_was_measured_at_the_shipped_settings() -> None:
    found = report.sections(DOC.read_text(encoding="utf-8"))
    assert found, "docs/BENCHMARKS.md has no benchmark sections"
    shipped = report.shipped()
    stale = {
        name: report.differences(section["settings"], shipped)
        for name, section in found.items()
        if report.differences(section["settings"], shipped)
    }
    assert not stale, (
        "these sections of docs/BENCHMARKS.md were measured at other settings than the code "
        f"ships; re-run them (python -m bench NAME): {stale}"
    )


def test_the_targets_table_is_the_sections_targets() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = report.sections(text)
    expected = report.summary({name: s["text"] for name, s in found.items()})
    assert expected and expected in text
    for section in found.values():
        for t in section["targets"]:
            assert t["status"] in report.STATUS, t


def test_a_section_at_other_settings_is_found_stale(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    target = report.target("a ratio ≤ 1.05", [0.98, 1.0, 1.02], 1.05, "ours 1 s, raw 1 s")
    report.write_section("demo", "Demo", "A table.", [target], path=doc, cmd="python -m bench")
    section = report.sections(doc.read_text(encoding="utf-8"))["demo"]
    assert report.differences(section["settings"], report.shipped()) == []
    changed = report.shipped()
    changed["config"]["k"] += 1
    changed["search"]["ivf_probe_share"] /= 2
    assert report.differences(section["settings"], changed) == [
        f"config.k: {changed['config']['k'] - 1!r} → {changed['config']['k']!r}",
        f"search.ivf_probe_share: {changed['search']['ivf_probe_share'] * 2!r} → "
        f"{changed['search']['ivf_probe_share']!r}",
    ]
    assert report.differences(None, changed) == ["settings: not recorded"]


def test_a_setting_added_since_a_section_matches_only_at_its_off_value() -> None:
    recorded = {"config": {"k": 4}}
    assert report.differences(recorded, {"config": {"k": 4, "store": ""}}) == []
    assert report.differences(recorded, {"config": {"k": 4, "store": "milvus:x.db"}}) == [
        "config.store: None → 'milvus:x.db'"
    ]


def test_a_spread_that_crosses_the_target_is_not_shown() -> None:
    assert report.target("t", [0.9, 1.0, 1.04], 1.05, "")["status"] == "met"
    assert report.target("t", [1.1, 1.2, 1.3], 1.05, "")["status"] == "missed"
    crossed = report.target("t", [1.0, 1.03, 1.2], 1.05, "")
    assert crossed["status"] == "not shown" and crossed["measured"] == 1.03
    assert crossed["spread"] == [1.0, 1.2] and crossed["rounds"] == 3
    assert report.target("t", [0.8, 0.9], 0.85, "", higher=True)["status"] == "not shown"
