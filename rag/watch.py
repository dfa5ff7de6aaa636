"""Keeping an index up to date while its folders change (`rag index --watch`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import RagError
from .read import SUPPORTED


def watch(
    engine,  # noqa: ANN001 - rag.pipeline.Engine (imported by the caller)
    paths: Sequence[Path | str] | None,
    on_update: Callable[[object], None],
    debounce_ms: int = 1500,
    stop_event: object | None = None,
) -> None:
    """Apply an incremental update after each burst of changes, until interrupted."""
    from watchfiles import watch as changes

    from . import store

    roots = [
        str(Path(p).resolve())
        for p in (paths or store.load(engine.config.index_dir).manifest.get("paths", []))
    ]
    index_dir = str(Path(engine.config.index_dir).resolve())

    def relevant(_change: object, path: str) -> bool:
        p = Path(path)
        return (
            not path.startswith(index_dir)
            and not any(part.startswith(".") for part in p.parts)
            and p.suffix.lower() in SUPPORTED
        )

    print(f"watching {', '.join(roots)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    for _batch in changes(
        *roots, watch_filter=relevant, debounce=debounce_ms, stop_event=stop_event
    ):
        try:
            on_update(engine.build(paths))
        except RagError as exc:  # one bad state (e.g. folder emptied) must not end the watch
            print(f"error: {exc}", file=sys.stderr, flush=True)
