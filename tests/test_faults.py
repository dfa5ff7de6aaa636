"""Faults during a rebuild, with real processes: two rebuilds at once, and questions asked while
one runs. (Killing a rebuild with SIGKILL at each stage is in test_index.py.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_MODEL

from rag import Config, Engine, IndexBusy, embed, ingest, lexical, load, store
from rag.cli import main as cli

LAPPO = "004_54fdbde5d22b5a7d.txt"
ZEPPELIN = "zeppelin.md"
ZEPPELIN_QUERY = "zeppelin moored over the Minsk railway station"

# The real CLI, its rebuild held at a fault point until a line arrives on its standard input.
HELD_REBUILD = str(Path(__file__).resolve().parent / "held_rebuild.py")


class Rebuild:
    """One `rag index` in its own process; its error output is collected as it arrives."""

    def __init__(self, corpus: Path, index_dir: Path, pause: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, HELD_REBUILD, pause, "index", str(corpus), "--index-dir",
             str(index_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, RAG_THREADS="1"),
        )  # fmt: skip
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def paused(self) -> bool:
        return any(line.startswith("paused at") for line in self.err)

    def release(self) -> int:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        code = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_whole(index_dir: Path, corpus: Path) -> None:
    """One consistent version: manifest, passages, vectors and the lexical index agree with
    each other and with the files in the corpus, and nothing else is left in the folder."""
    index = load(index_dir)
    manifest = index.manifest
    chunks = list(index.all_chunks())
    assert [c.id for c in chunks] == list(range(manifest["chunks"])) and index.size == len(chunks)
    assert set(manifest["documents"]) == {p.name for p in corpus.iterdir()}
    for source, info in manifest["documents"].items():
        rows = chunks[info["first"] : info["first"] + info["count"]]
        assert rows and {c.source for c in rows} == {source}
        assert info["sha256"] == sha256(corpus / source)
    assert sum(info["count"] for info in manifest["documents"].values()) == len(chunks)
    # Each stored vector is its own passage's: a sample is embedded again and compared.
    sample = [0, len(chunks) // 2, len(chunks) - 1]
    fresh = embed.load(manifest["embed_model"]).encode(
        [ingest.vector_text(chunks[i]) for i in sample]
    )
    assert np.allclose(index.reconstruct(sample), fresh, atol=1e-3)
    assert lexical.load(index.folder / lexical.FOLDER).scores["num_docs"] == len(chunks)
    live = store.current_folder(index_dir).name
    assert {p.name for p in index_dir.iterdir()} == {live, store.CURRENT, ".lock"}


def wait_until(condition, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_two_rebuilds_at_once_one_is_refused_and_questions_use_the_old_index_until_the_swap(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_dir = tmp_path / "index"
    Engine(Config.load(index_dir=index_dir)).build([corpus])
    old = load(index_dir).version
    old_sources = set(load(index_dir).manifest["documents"])
    reader = Engine(Config.load(index_dir=index_dir))  # a long-lived engine, like the page's
    assert reader.search(ZEPPELIN_QUERY, k=1)[0].chunk.source != ZEPPELIN
    (corpus / ZEPPELIN).write_text(
        "# Airship news\n\nA zeppelin moored over the Minsk railway station on Friday.\n", "utf-8"
    )

    # Both started at the same moment; whichever takes the lock first is held just before
    # its swap, with its new version fully written beside the live one.
    rebuilds = [Rebuild(corpus, index_dir, pause="swap") for _ in range(2)]
    try:
        wait_until(
            lambda: any(r.paused for r in rebuilds) and any(r.proc.poll() is not None for r in rebuilds),
            240,
            "one rebuild to pause and the other to end",
        )  # fmt: skip
        (winner,) = [r for r in rebuilds if r.paused]
        (loser,) = [r for r in rebuilds if r is not winner]
        lines = [line.strip() for line in loser.err if line.strip()]
        assert loser.proc.returncode == 1
        assert lines[-1] == (
            f"error: another rebuild of {index_dir} is running; wait for it to finish and try again"
        )
        assert not any("Traceback" in line for line in loser.err)
        with pytest.raises(IndexBusy, match="another rebuild"):  # the Python API is refused too
            Engine(Config.load(index_dir=index_dir)).build([corpus])

        # Held before the swap: the new version is on disk, but every question is answered
        # from the old one, by the long-lived engine, by a new one and by the command line.
        versions = sorted(p.name for p in index_dir.glob("v-*"))
        assert len(versions) == 2 and load(index_dir).version == old
        assert reader.search(ZEPPELIN_QUERY, k=1)[0].chunk.source != ZEPPELIN
        assert cli(["search", ZEPPELIN_QUERY, "-k", "3", "--index-dir", str(index_dir)]) == 0
        assert ZEPPELIN not in capsys.readouterr().out
        asker = Engine(
            Config.load(index_dir=index_dir, model=SMALL_MODEL, threads=1, max_tokens=24)
        )
        answer = asker.answer("Where did the zeppelin moor?")
        assert answer.text and {c.source for c in answer.citations} <= old_sources

        assert winner.release() == 0
    finally:
        for r in rebuilds:
            r.stop()

    assert load(index_dir).version != old
    assert reader.search(ZEPPELIN_QUERY, k=1)[0].chunk.source == ZEPPELIN  # after the swap
    assert reader.search("What did Lappo threaten?", k=1)[0].chunk.source == LAPPO
    assert_whole(index_dir, corpus)
