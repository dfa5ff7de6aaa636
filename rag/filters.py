"""Restricting a question to some documents: by path pattern, file type and modification date.

A filter picks documents from the index's manifest; the passages of those documents are the
only ones dense and lexical retrieval rank (see `rag.retrieve.search`), so a filtered question
gets the best k passages of the chosen documents, not what is left of the best k overall.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from .errors import RagError

KEYS = ("path", "type", "since", "until")
HELP = (
    'path=GLOB (e.g. "reports/*" or "*.pdf", case-insensitive), type=EXT[,EXT] (e.g. pdf,docx), '
    "since=YYYY-MM-DD, until=YYYY-MM-DD (modified on or after / on or before)"
)


@dataclass(frozen=True)
class Where:
    """Which documents a question may be answered from; every part given must hold."""

    paths: tuple[str, ...] = ()  # glob patterns over the source path; any may match
    types: tuple[str, ...] = ()  # file extensions, lowercase, without the dot
    since: dt.date | None = None  # modified on or after this day (local time)
    until: dt.date | None = None  # modified on or before this day

    def __bool__(self) -> bool:
        return bool(self.paths or self.types or self.since or self.until)

    def describe(self) -> str:
        parts = [f"path={p}" for p in self.paths]
        if self.types:
            parts.append("type=" + ",".join(self.types))
        parts += [
            f"{k}={v.isoformat()}" for k, v in (("since", self.since), ("until", self.until)) if v
        ]
        return " ".join(parts)

    def to_dict(self) -> dict:
        return {
            "path": list(self.paths),
            "type": list(self.types),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }

    def matches(self, source: str, modified: float | None) -> bool:
        """Whether a document (its source path and modification time) passes."""
        name = source.casefold()
        if self.paths and not any(_glob(name, p.casefold()) for p in self.paths):
            return False
        if self.types and PurePosixPath(name).suffix.lstrip(".") not in self.types:
            return False
        if self.since or self.until:
            if modified is None:
                return False
            day = dt.datetime.fromtimestamp(modified).date()
            if (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


def _glob(name: str, pattern: str) -> bool:
    if pattern.endswith("/"):  # a folder: everything under it
        pattern += "*"
    if "/" not in pattern:  # a bare name pattern matches the file's name in any folder
        return fnmatch.fnmatchcase(PurePosixPath(name).name, pattern)
    return fnmatch.fnmatchcase(name, pattern)


# What the API accepts as a filter (see `parse`).
Filter = Where | Mapping | str | Iterable[str] | None


def parse(value: Filter) -> Where:
    """A `Where` from a dict ({"path": "reports/*", "type": "pdf", "since": "2024-01-01"}),
    "key=value" strings (`--where`, several may be given or joined by spaces), or None."""
    if value is None or isinstance(value, Where):
        return value or Where()
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, Mapping):
        pairs: dict[str, list[str]] = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep or not text.strip():
                raise RagError(f"the filter {item!r} is not key=value; use {HELP}")
            pairs.setdefault(key.strip().lower(), []).append(text.strip())
        value = pairs
    unknown = set(value) - set(KEYS)
    if unknown:
        raise RagError(f"unknown filter {', '.join(sorted(unknown))}: use {HELP}")
    paths = tuple(p for v in _many(value.get("path")) for p in [v.strip()] if p)
    types = tuple(
        t.strip().lstrip(".").lower()
        for v in _many(value.get("type"))
        for t in v.split(",")
        if t.strip().lstrip(".")
    )
    since, until = _day(value.get("since"), "since"), _day(value.get("until"), "until")
    if since and until and since > until:
        raise RagError(f"the filter since={since} is after until={until}: nothing could match")
    return Where(paths, types, since, until)


def _many(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[union-attr]


def _day(value: object, key: str) -> dt.date | None:
    values = _many(value) if not isinstance(value, (dt.date, dt.datetime)) else [value]
    if not values or values[-1] in ("", None):
        return None
    last = values[-1]
    if isinstance(last, dt.datetime):
        return last.date()
    if isinstance(last, dt.date):
        return last
    try:
        return dt.date.fromisoformat(str(last).strip())
    except ValueError:
        raise RagError(f"{key}={last!r} is not a date: write it as YYYY-MM-DD") from None


def documents(where: Where, manifest: Mapping) -> list[str]:
    """The sources of the index's documents that pass the filter."""
    chosen = []
    for source, info in manifest.get("documents", {}).items():
        modified = info.get("modified")
        if modified is None and (where.since or where.until):
            try:  # indexes built before the date was recorded: ask the file itself
                modified = os.stat(info.get("path", "")).st_mtime
            except OSError:
                modified = None
        if where.matches(source, modified):
            chosen.append(source)
    return chosen


def passage_ids(where: Where, manifest: Mapping) -> np.ndarray:
    """The ids of the passages of the documents that pass (each document's passages are one
    run of ids), sorted; raises RagError naming the filter when no document passes."""
    infos = manifest.get("documents", {})
    chosen = documents(where, manifest)
    if not chosen:
        raise RagError(
            f"no document of the index matches the filter {where.describe()} "
            f"({len(infos)} documents indexed): widen or remove it"
        )
    runs = [np.arange(infos[s]["first"], infos[s]["first"] + infos[s]["count"]) for s in chosen]
    return np.sort(np.concatenate(runs)).astype(np.int64)
