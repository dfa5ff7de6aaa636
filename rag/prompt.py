"""Reading prompt templates from the prompts folder and filling their {placeholders} strictly."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import PromptError

# `{{` and `}}` are literal braces; `{name}` is a placeholder; any other brace is a mistake.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^\W\d]\w*)\}|[{}]")


@dataclass(frozen=True)
class Template:
    """A prompt template: its file name and text, with the placeholders it uses."""

    name: str
    text: str
    placeholders: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        names = set()
        for m in _TOKEN.finditer(self.text):
            if m.group(1) is not None:
                names.add(m.group(1))
            elif len(m.group(0)) == 1:
                line = self.text.count("\n", 0, m.start()) + 1
                raise PromptError(
                    f"Prompt template {self.name!r} has a stray {m.group(0)!r} on line {line}; "
                    "write a placeholder as {name} and a literal brace as {{ or }}."
                )
        object.__setattr__(self, "placeholders", frozenset(names))

    def fill(self, **values: object) -> str:
        """The text with every placeholder replaced by str(value); braces in values stay as-is."""
        missing = self.placeholders - values.keys()
        if missing:
            raise PromptError(
                f"Prompt template {self.name!r} needs a value for "
                f"{_braced(missing)}; pass it when filling the template."
            )
        unused = values.keys() - self.placeholders
        if unused:
            raise PromptError(
                f"Prompt template {self.name!r} has no placeholder {_braced(unused)}; "
                f"it uses {_braced(self.placeholders) or 'none'}."
            )
        # One pass over the template only: the values are never scanned for braces.
        return _TOKEN.sub(
            lambda m: m.group(0)[0] if m.group(1) is None else str(values[m.group(1)]), self.text
        )


def load(name: str, folder: Path) -> Template:
    """The template `name` (e.g. "system.txt", or "system" for "system.txt") in `folder`."""
    path = Path(folder) / (name if Path(name).suffix else f"{name}.txt")
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise PromptError(
            f"Prompt template {path.name!r} not found in {Path(folder)}; "
            "restore it or point the prompts folder at one that has it."
        ) from None
    return _read(path.resolve(), mtime)


def fill(name: str, folder: Path, **values: object) -> str:
    """Load the template `name` from `folder` and fill it with `values`."""
    return load(name, folder).fill(**values)


@functools.lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int) -> Template:
    # mtime_ns is part of the cache key, so an edited file is read again.
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PromptError(
            f"Prompt template {path.name!r} in {path.parent} is unreadable: {e}"
        ) from e
    return Template(path.name, text)


def _braced(names: frozenset[str] | set[str]) -> str:
    return ", ".join(f"{{{n}}}" for n in sorted(names))
