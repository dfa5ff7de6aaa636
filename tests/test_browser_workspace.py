"""The workspace in a real headless Chromium: create a collection, upload, ask, open the cited
document at its span, give feedback, reload and resume the conversation; two logged-in users
who never see each other's conversations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BROWSER_MARKS, SEEDS, chromium, close_chromium, serve_page

from rag import Config
from rag.workspace import chats

LAPPO = "004_54fdbde5d22b5a7d.txt"
WAIT_S = 150

pytestmark = BROWSER_MARKS


@pytest.fixture()
def browser() -> Iterator[object]:
    driver = chromium()
    yield driver
    close_chromium(driver)


def wait(driver: object, seconds: float = WAIT_S):  # noqa: ANN201
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds)


def css(driver: object, selector: str):  # noqa: ANN201
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    return wait(driver).until(ready.element_to_be_clickable((By.CSS_SELECTOR, selector)))


def text_in(driver: object, selector: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    wait(driver).until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text))


def tab(driver: object, name: str) -> None:
    from selenium.webdriver.common.by import By

    wait(driver).until(
        lambda d: [
            b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == name
        ]
    )[0].click()


def pick(driver: object, dropdown: str, label: str) -> None:
    """Choose the option whose text starts with `label` in a Gradio dropdown."""
    from selenium.webdriver.common.by import By

    css(driver, f"#{dropdown} input").click()
    option = wait(driver).until(
        lambda d: [
            li
            for li in d.find_elements(By.CSS_SELECTOR, f"#{dropdown} li[role=option]")
            if (li.get_attribute("aria-label") or "").startswith(label)
        ]
    )[0]
    option.click()


def ask(driver: object, question: str) -> object:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    before = len(driver.find_elements(By.CSS_SELECTOR, "#chatbot .message"))
    css(driver, "#question textarea").send_keys(question)
    driver.find_element(By.ID, "send").click()
    wait(driver).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chatbot .message")) > before
    )
    done = (By.CSS_SELECTOR, '#sources .rag-sources[data-state="done"]')
    return wait(driver).until(ready.presence_of_element_located(done))


def test_collection_upload_ask_view_feedback_reload_and_resume(
    tmp_path: Path, browser, artifacts_dir: Path
) -> None:
    from selenium.webdriver.common.by import By

    with serve_page(tmp_path) as (engine, url):
        data = Path(engine.config.data_dir)
        browser.get(url)
        tab(browser, "Collections")
        css(browser, "#new-collection textarea, #new-collection input").send_keys("case")
        css(browser, "#create-collection").click()
        text_in(browser, "#collection-status", "Created")

        tab(browser, "Documents")
        upload = browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
        upload.send_keys(str(SEEDS / LAPPO))
        text_in(browser, "body", "Added 1 file")
        css(browser, "#rebuild").click()
        text_in(browser, "body", "Rebuilt in")
        assert (data / "collections" / "case" / "documents" / LAPPO).is_file()

        tab(browser, "Chat")
        panel = ask(browser, "What did Lappo threaten?")
        assert LAPPO in panel.get_attribute("textContent")
        # Open the document at a passage: the page shows the file with the span marked.
        for summary in panel.find_elements(By.CSS_SELECTOR, "details.rag-searched summary"):
            summary.click()
        panel.find_elements(By.CSS_SELECTOR, "button.rag-open")[0].click()
        text_in(browser, "#viewer .rag-viewer-head", LAPPO)
        marked = browser.find_element(By.CSS_SELECTOR, "#viewer mark#rag-cited-start")
        original = (SEEDS / LAPPO).read_text(encoding="utf-8")
        assert marked.text.strip() and " ".join(marked.text.split())[:30] in " ".join(
            original.split()
        )
        browser.save_screenshot(str(artifacts_dir / "viewer.png"))

        # Thumbs down with a comment and the right answer.
        css(browser, "#chatbot button[aria-label=Dislike]").click()
        css(browser, "#feedback-comment textarea").send_keys("not what he said")
        css(browser, "#feedback-right textarea").send_keys("immediate and cruel")
        css(browser, "#feedback-save").click()
        text_in(browser, "#feedback-note", "Saved")
        saved = chats.Workspace(data)
        (rating,) = saved.feedback(None)
        assert rating["rating"] == -1 and rating["comment"] == "not what he said"
        assert rating["right_answer"] == "immediate and cruel"
        assert rating["collection"] == "case" and rating["question"] == "What did Lappo threaten?"
        assert rating["settings"]["model"] == engine.config.model
        assert rating["result"]["passages"], "the passages shown are kept with the rating"

        # Reload: the conversation is listed under its collection and resumes.
        browser.refresh()
        pick(browser, "collection", "case")
        pick(browser, "chats", "What did Lappo threaten?")
        text_in(browser, "#chatbot", "What did Lappo threaten?")
        ask(browser, "What did he say about the border guards?")
        (conversation,) = saved.conversations("", "case")
        assert conversation["turns"] == 2
        history = saved.history("", conversation["id"])
        assert history[0]["content"] == "What did Lappo threaten?"
        assert saved.conversations("", "default") == []
        # Rename it and export it as Markdown from "This conversation".
        css(browser, "#conversation-tools button, #conversation-tools .label-wrap").click()
        title = css(browser, "#chat-title textarea, #chat-title input")
        title.clear()
        title.send_keys("Lappo's threat")
        css(browser, "#rename-chat").click()
        wait(browser).until(
            lambda d: saved.conversations("", "case")[0]["title"] == "Lappo's threat"
        )
        css(browser, "#export-chat").click()
        link = css(browser, "#exported a")
        assert "conversation-" in (link.get_attribute("href") or "")
        browser.save_screenshot(str(artifacts_dir / "workspace.png"))
        assert "Traceback" not in browser.page_source


def test_the_filter_control_limits_the_passages_searched(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    with serve_page(tmp_path) as (_engine, url):
        browser.get(url)
        css(browser, "#filters button, #filters .label-wrap").click()
        css(browser, "#filter-path textarea, #filter-path input").send_keys("001_*")
        panel = ask(browser, "What did Lappo threaten?")
        shown = panel.find_elements(By.CSS_SELECTOR, ".rag-meta code")
        assert shown and {c.get_attribute("textContent") for c in shown} == {
            "001_170c96ab2ce3f4e4.txt"
        }


def login(driver: object, url: str, user: str, password: str) -> None:
    driver.get(url)
    css(driver, "input[type=text]").send_keys(user)  # Gradio's login form
    css(driver, "input[type=password]").send_keys(password + "\n")
    css(driver, "#question textarea")


def test_two_logged_in_users_never_see_each_others_conversations(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    logins = tmp_path / "logins.txt"
    logins.write_text("ana:first-secret\nbo:second-secret\n", encoding="utf-8")
    from rag import web

    auth = web.login(file=logins)
    ana, bo = chromium(), chromium()
    try:
        with serve_page(tmp_path, auth=auth) as (engine, url):
            login(ana, url, "ana", "first-secret")
            login(bo, url, "bo", "second-secret")
            ask(ana, "What did Lappo threaten?")
            ask(bo, "Who is Lukashenko?")
            saved = chats.Workspace(engine.config.data_dir)
            assert [c["title"] for c in saved.conversations("ana")] == ["What did Lappo threaten?"]
            assert [c["title"] for c in saved.conversations("bo")] == ["Who is Lukashenko?"]
            for driver, own, other in (
                (ana, "What did Lappo", "Who is Lukashenko"),
                (bo, "Who is Lukashenko", "What did Lappo"),
            ):
                driver.refresh()
                css(driver, "#chats input").click()
                options = wait(driver).until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, "#chats li[role=option]")
                )
                texts = [o.get_attribute("aria-label") or "" for o in options]
                assert any(t.startswith(own) for t in texts)
                assert not any(t.startswith(other) for t in texts)
            assert Config.load().data_dir != engine.config.data_dir
    finally:
        for driver in (ana, bo):
            close_chromium(driver)
