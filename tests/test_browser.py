"""The chat page in a real headless Chromium: ask, watch the answer stream, see its sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BROWSER_MARKS, chromium, close_chromium, serve_page

LAPPO = "004_54fdbde5d22b5a7d.txt"
LAPPO_TITLE = "Top Putin Ally Threatens"
ANSWER_TIMEOUT_S = 120

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_page(tmp_path_factory.mktemp("browser")) as (_engine, address):
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    driver = chromium()
    yield driver
    close_chromium(driver)


def test_a_question_streams_an_answer_and_shows_the_lappo_article(
    url: str, browser, artifacts_dir: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, ANSWER_TIMEOUT_S)
    box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#question textarea")))
    wait.until(ready.title_contains("Ask your documents"))
    box.send_keys("What did Lappo threaten?")
    browser.find_element(By.ID, "send").click()

    done = (By.CSS_SELECTOR, '#sources .rag-sources[data-state="done"]')
    panel = wait.until(ready.presence_of_element_located(done))
    # The passages searched are collapsed; open them so the screenshot shows them too.
    for summary in panel.find_elements(By.CSS_SELECTOR, "details summary"):
        summary.click()
    panel_text = panel.get_attribute("textContent")
    assert LAPPO in panel_text or LAPPO_TITLE in panel_text

    bubbles = browser.find_elements(By.CSS_SELECTOR, "#chatbot .message")
    assert any("What did Lappo threaten?" in b.text for b in bubbles)
    assert bubbles[-1].text.strip() not in ("", "…")
    assert "Traceback" not in browser.page_source

    artifacts_dir.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(artifacts_dir / "chat.png"))
