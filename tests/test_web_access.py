"""The page's access rules over HTTP, with crafted requests: the login applies to every event,
a logged-in user reaches only their own conversations, and the document viewer serves only the
collection's own files."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import serve_page

from rag import Answer, Citation
from rag.workspace import chats

LAPPO = "004_54fdbde5d22b5a7d.txt"
LOGINS = [("ana", "first-secret"), ("bo", "second-secret")]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("access")
    (root / "secret.txt").write_text("the password is hunter2", encoding="utf-8")
    with serve_page(root, auth=LOGINS) as (engine, url):
        yield engine, url


def session(url: str, user: str | None) -> httpx.Client:
    """A browser-like HTTP session (cookies kept), logged in as `user` when one is given."""
    s = httpx.Client(follow_redirects=True, timeout=60)
    if user:
        password = dict(LOGINS)[user]
        assert s.post(url + "login", data={"username": user, "password": password}).is_success
    return s


def call(  # noqa: ANN201
    s: httpx.Client,
    url: str,
    api_name: str,
    data: list,
    event_data: dict | None = None,
    token: str | None = None,
):
    """One event as the page's own script sends it: join the queue, read the result. `api_name`
    "load" is the page's load event; `token` is the browser tab (a new one by default)."""
    config = s.get(url + "config")
    config.raise_for_status()
    fn = next(
        d["id"]
        for d in config.json()["dependencies"]
        if d.get("api_name") == api_name
        or (api_name == "load" and any(t[1] == "load" for t in d.get("targets", [])))
    )
    token = token or uuid.uuid4().hex
    joined = s.post(
        url + "gradio_api/queue/join",
        json={
            "data": data,
            "event_data": event_data,
            "fn_index": fn,
            "trigger_id": None,
            "session_hash": token,
        },
    )
    joined.raise_for_status()
    with s.stream("GET", url + "gradio_api/queue/data", params={"session_hash": token}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"]
    raise AssertionError("no result")


def test_without_a_login_nothing_is_served(page: tuple) -> None:
    _, url = page
    anonymous = session(url, None)
    assert anonymous.get(url + "config").status_code == 401
    joined = anonymous.post(
        url + "gradio_api/queue/join",
        json={"data": [None], "event_data": {"source": LAPPO}, "fn_index": 0, "session_hash": "x"},
    )
    assert joined.status_code == 401
    wrong = session(url, None)
    assert not wrong.post(url + "login", data={"username": "ana", "password": "nope"}).is_success


@pytest.mark.parametrize(
    "source",
    [
        "../secret.txt",
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "..%2F..%2Fsecret.txt",
        "corpus/../secret.txt",
        f"./{LAPPO}/../../secret.txt",
    ],
)
def test_crafted_document_requests_are_refused(page: tuple, source: str) -> None:
    _, url = page
    output = call(session(url, "ana"), url, "open_document", [None], {"source": source})
    shown = json.dumps(output)
    assert "is not a document of the collection" in shown
    assert "hunter2" not in shown and "root:" not in shown


def test_a_cited_span_is_served_marked_to_a_logged_in_user(page: tuple) -> None:
    engine, url = page
    text = (Path(engine.config.corpus) / LAPPO).read_text(encoding="utf-8")
    start = text.index("The head of the border committee")
    span = {"source": LAPPO, "start": start, "end": start + 120, "quotes": ""}
    output = call(session(url, "bo"), url, "open_document", [None], span)
    assert '<mark class=\\"rag-cited\\" id=\\"rag-cited-start\\">The head of the border' in (
        json.dumps(output)
    )


def test_a_user_cannot_open_another_users_conversation(page: tuple) -> None:
    engine, url = page
    saved = chats.Workspace(engine.config.data_dir)
    reply = Answer("Cruel [1].", (Citation(1, LAPPO, "T", 0, 5, "text"),), outcome="answered")
    theirs, _ = saved.add_turn("ana", None, "default", "Ana's private question", reply)
    for user in ("ana", "bo"):
        tab, token = session(url, user), uuid.uuid4().hex
        listed = json.dumps(call(tab, url, "load", [], token=token))  # the tab opens
        opened = json.dumps(call(tab, url, "open_chat", [theirs], token=token))
        assert ("Ana's private question" in listed + opened) == (user == "ana"), user
