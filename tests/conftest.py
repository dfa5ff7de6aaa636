"""Shared fixtures: the real embedding model, the real small LLM, the seeds, all loaded once."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Collections, saved conversations and feedback go to a folder of this run, never the user's.
os.environ.setdefault("RAG_DATA_DIR", tempfile.mkdtemp(prefix="rag-test-data-"))

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    return SEEDS


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A writable copy of the seeds."""
    dest = tmp_path / "corpus"
    shutil.copytree(SEEDS, dest)
    return dest


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


SMALL_MODEL = "smollm2-135m"
# The page's filter controls, left empty, for calls of its /respond event (path, types, since,
# until come after the question, the number of passages and the model).
NO_FILTER = ("", [], "", "")


def stop(process: subprocess.Popen) -> None:
    """End a server process started by a test: politely, then for sure."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_page(
    root: Path, auth: tuple[str, str] | None = None, **settings: object
) -> Iterator[tuple]:
    """(engine, url) of the real chat page on 127.0.0.1 over a fresh index of a seeds copy,
    answering with the small model (other `settings` of Config may be given); closed on exit."""
    from rag import Config, Engine, web

    shutil.copytree(SEEDS, root / "corpus")
    settings = {"model": SMALL_MODEL, "max_tokens": 96, "data_dir": root / "data", **settings}
    config = Config.load(corpus=root / "corpus", index_dir=root / "index", **settings)
    engine = Engine(config)
    engine.build([config.corpus])
    assert web.warm(engine) == []
    app = web.build_app(engine)
    url = web.launch(app, port=free_port(), prevent_thread_lock=True, auth=auth)
    try:
        yield engine, url
    finally:
        app.close()


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The marks of every test that drives the page in a real headless Chromium.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs /usr/bin/chromium and /usr/bin/chromedriver: run `make browser`",
    ),
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def chromium() -> object:
    """A headless Chromium driven by selenium, with a profile of its own (`driver.profile`,
    removed by `close_chromium`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="rag-chromium-")
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1800",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.profile = profile
    return driver


def close_chromium(driver: object) -> None:
    driver.quit()
    shutil.rmtree(driver.profile, ignore_errors=True)
