"""The real `rag` command line, with its rebuild held at one fault point (test-only).

    python tests/held_rebuild.py POINT index CORPUS --index-dir DIR

At POINT ("embedding", "writing" or "swap", see `rag.store.fault_point`) it prints
"paused at POINT" to standard error and waits for a line on standard input, so a test can kill
the process there or watch the index before letting it go on. The shipped code never waits:
only this script sets `rag.store.fault_hook`.
"""

from __future__ import annotations

import sys

from rag import store
from rag.cli import main


def hold_at(point: str) -> None:
    def hold(name: str) -> None:
        if name == point:
            print(f"paused at {name}", file=sys.stderr, flush=True)
            sys.stdin.readline()

    store.fault_hook = hold


if __name__ == "__main__":
    hold_at(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
