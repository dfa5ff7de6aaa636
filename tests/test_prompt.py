"""Prompt templates: read from a folder, filled strictly, braces in values kept as written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag import prompt
from rag.errors import PromptError, RagError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_and_fill(tmp_path: Path) -> None:
    write(tmp_path, "system.txt", "Answer {question} from:\n{passages}\n")
    template = prompt.load("system.txt", tmp_path)
    assert template.name == "system.txt"
    assert template.placeholders == frozenset({"question", "passages"})
    assert template.fill(question="why?", passages="[1] text") == "Answer why? from:\n[1] text\n"


def test_name_without_suffix_means_txt(tmp_path: Path) -> None:
    write(tmp_path, "system.txt", "Hi {who}")
    assert prompt.fill("system", tmp_path, who="you") == "Hi you"


def test_fill_convenience(tmp_path: Path) -> None:
    write(tmp_path, "q.txt", "Q: {question}")
    assert prompt.fill("q.txt", tmp_path, question="Where?") == "Q: Where?"


def test_missing_file_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(PromptError) as err:
        prompt.load("absent.txt", tmp_path)
    assert "absent.txt" in str(err.value)
    assert str(tmp_path) in str(err.value)
    assert isinstance(err.value, RagError)


def test_templates_are_read_as_utf8(tmp_path: Path) -> None:
    write(tmp_path, "u.txt", "Réponds — «{q}» ✓")
    assert prompt.fill("u.txt", tmp_path, q="où?") == "Réponds — «où?» ✓"


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path, "t.txt", "one {x}")
    assert prompt.fill("t.txt", tmp_path, x=1) == "one 1"
    assert prompt.load("t.txt", tmp_path) is prompt.load("t.txt", tmp_path)  # cached
    path.write_text("two {x}", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert prompt.fill("t.txt", tmp_path, x=2) == "two 2"


def test_missing_value_names_placeholder_and_template(tmp_path: Path) -> None:
    write(tmp_path, "system.txt", "{question} {passages}")
    with pytest.raises(PromptError) as err:
        prompt.fill("system.txt", tmp_path, question="q")
    assert "{passages}" in str(err.value)
    assert "system.txt" in str(err.value)
    assert "{question}" not in str(err.value)


def test_unused_value_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "system.txt", "{question}")
    with pytest.raises(PromptError) as err:
        prompt.fill("system.txt", tmp_path, question="q", qustion="typo")
    assert "{qustion}" in str(err.value)
    assert "system.txt" in str(err.value)


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        # braces in values are never re-interpreted
        ("P: {passages}", {"passages": "a {question} b"}, "P: a {question} b"),
        ("P: {passages}", {"passages": "{{x}} } {"}, "P: {{x}} } {"),
        ("{a}{b}", {"a": "{b}", "b": "{a}"}, "{b}{a}"),
        ("{a}", {"a": "\\1 \\g<0>"}, "\\1 \\g<0>"),
        # {{ and }} are literal braces
        ('JSON: {{"k": {v}}}', {"v": 1}, 'JSON: {"k": 1}'),
        ("{{name}}", {}, "{name}"),
        ("{{{name}}}", {"name": "x"}, "{x}"),
        # the same placeholder twice, non-string values
        ("{n} and {n}", {"n": 3}, "3 and 3"),
        ("no placeholders", {}, "no placeholders"),
    ],
)
def test_fill_substitutes_once(
    tmp_path: Path, text: str, values: dict[str, object], expected: str
) -> None:
    assert prompt.Template("t.txt", text).fill(**values) == expected


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("{question} {passages} {question}", {"question", "passages"}),
        ("{{question}} {_x} {a1}", {"_x", "a1"}),
        ("", set()),
    ],
)
def test_placeholders(text: str, names: set[str]) -> None:
    assert prompt.Template("t.txt", text).placeholders == frozenset(names)


@pytest.mark.parametrize("text", ["a { b", "a } b", "{1x}", "{ name }", "{na-me}", "{}"])
def test_stray_braces_are_an_error(tmp_path: Path, text: str) -> None:
    write(tmp_path, "bad.txt", text)
    with pytest.raises(PromptError, match="bad.txt"):
        prompt.load("bad.txt", tmp_path)
