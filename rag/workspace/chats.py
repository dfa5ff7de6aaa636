"""Saved conversations and feedback on answers, in one SQLite file per data folder.

Every row belongs to a user (the login name, "" when the page has no login) and every read and
write names that user, so one user never sees, changes or exports another's. A turn is written
in one transaction once its answer is complete, in WAL mode with full syncs: a crash or a kill
loses at most the turn being answered.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import RagError
from ..types import Answer

FILE = "workspace.sqlite3"
TITLE_CHARS = 80
RATINGS = {"up": 1, "down": -1}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    collection TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations(user, collection, updated);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    result TEXT NOT NULL,      -- the Answer as JSON: citations, outcome, the question searched
    settings TEXT NOT NULL,    -- model, k, retrieval, filter, index version: what made it
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation, id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    turn INTEGER NOT NULL UNIQUE,  -- one rating per answer; rating again replaces it
    rating INTEGER NOT NULL,       -- 1 up, -1 down
    comment TEXT NOT NULL,
    right_answer TEXT NOT NULL,    -- what the answer should have said, if the user says it
    right_source TEXT,             -- the document holding it; "" when no document does
    question TEXT NOT NULL,
    history TEXT NOT NULL,
    answer TEXT NOT NULL,
    result TEXT NOT NULL,
    settings TEXT NOT NULL,
    collection TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_user ON feedback(user, collection);
"""


class Workspace:
    """The conversations and feedback kept in `folder` (a user's data folder)."""

    def __init__(self, folder: Path | str) -> None:
        self.path = Path(folder) / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db(begin=False) as db:
            db.executescript(_SCHEMA)  # its own transaction (executescript commits first)

    @contextlib.contextmanager
    def _db(self, begin: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection per call, one transaction (committed at the end, rolled back on an
        error): safe from several threads and processes at once."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise RagError(f"cannot open the saved conversations {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            if not begin:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise RagError(f"the saved conversations {self.path} are unreadable: {exc}") from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # -- conversations ---------------------------------------------------------------------

    def add_turn(
        self,
        user: str,
        conversation: str | None,
        collection: str,
        question: str,
        answer: Answer,
        settings: Mapping | None = None,
    ) -> tuple[str, int]:
        """Save one answered turn; starts a conversation (titled by its first question) when
        `conversation` is None. Returns (conversation id, turn id)."""
        now = time.time()
        with self._db() as db:
            if conversation is None:
                conversation = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO conversations VALUES (?,?,?,?,?,?)",
                    (conversation, user, collection, title_of(question), now, now),
                )
            else:
                self._own(db, user, conversation)
                db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, conversation))
            cursor = db.execute(
                "INSERT INTO turns (conversation, question, answer, result, settings, created) "
                "VALUES (?,?,?,?,?,?)",
                (
                    conversation,
                    question,
                    answer.text,
                    json.dumps(answer.to_dict(), ensure_ascii=False),
                    json.dumps(dict(settings or {}), ensure_ascii=False, default=str),
                    now,
                ),
            )
            return conversation, int(cursor.lastrowid)

    def conversations(self, user: str, collection: str | None = None) -> list[dict]:
        """The user's conversations, newest first: id, title, collection, turns, times."""
        sql = (
            "SELECT c.id, c.title, c.collection, c.created, c.updated, COUNT(t.id) "
            "FROM conversations c LEFT JOIN turns t ON t.conversation = c.id WHERE c.user=?"
        )
        args: list = [user]
        if collection is not None:
            sql += " AND c.collection=?"
            args.append(collection)
        with self._db() as db:
            rows = db.execute(sql + " GROUP BY c.id ORDER BY c.updated DESC", args).fetchall()
        keys = ("id", "title", "collection", "created", "updated", "turns")
        return [dict(zip(keys, r)) for r in rows]

    def conversation(self, user: str, conversation: str) -> dict:
        """One conversation of the user with its turns (each with its saved Answer)."""
        with self._db() as db:
            head = self._own(db, user, conversation)
            rows = db.execute(
                "SELECT t.id, t.question, t.answer, t.result, t.settings, t.created, f.rating "
                "FROM turns t LEFT JOIN feedback f ON f.turn = t.id "
                "WHERE t.conversation=? ORDER BY t.id",
                (conversation,),
            ).fetchall()
        turns = [
            {
                "id": r[0],
                "question": r[1],
                "answer": r[2],
                "result": json.loads(r[3]),
                "settings": json.loads(r[4]),
                "created": r[5],
                "rating": r[6],
            }
            for r in rows
        ]
        return {**head, "turns": turns}

    def history(self, user: str, conversation: str) -> list[dict]:
        """The conversation's turns as chat messages, for rewriting a follow-up question."""
        out: list[dict] = []
        for t in self.conversation(user, conversation)["turns"]:
            out += [
                {"role": "user", "content": t["question"]},
                {"role": "assistant", "content": t["answer"]},
            ]
        return out

    def rename(self, user: str, conversation: str, title: str) -> None:
        title = " ".join(str(title).split())[:TITLE_CHARS]
        if not title:
            raise RagError("a conversation's title cannot be empty")
        with self._db() as db:
            self._own(db, user, conversation)
            db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation))

    def delete(self, user: str, conversation: str) -> None:
        """Delete a conversation with its turns and the feedback given on them."""
        with self._db() as db:
            self._own(db, user, conversation)
            db.execute(
                "DELETE FROM feedback WHERE turn IN (SELECT id FROM turns WHERE conversation=?)",
                (conversation,),
            )
            db.execute("DELETE FROM conversations WHERE id=?", (conversation,))

    def delete_collection(self, collection: str) -> None:
        """Forget every conversation and rating of a deleted collection."""
        with self._db() as db:
            db.execute("DELETE FROM feedback WHERE collection=?", (collection,))
            db.execute("DELETE FROM conversations WHERE collection=?", (collection,))

    def markdown(self, user: str, conversation: str) -> str:
        """The conversation as Markdown: each question, its answer and the passages cited."""
        found = self.conversation(user, conversation)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(found["created"]))
        lines = [f"# {found['title']}", "", f"Collection `{found['collection']}`, {when}.", ""]
        for t in found["turns"]:
            lines += [f"## {t['question']}", "", t["answer"] or "(no answer)", ""]
            result = t["result"]
            if result.get("outcome") == "withheld":
                lines += [f"*An answer was written but not shown: {result.get('reason')}.*", ""]
            citations = result.get("citations") or []
            if citations:
                lines += ["Sources:", ""]
            for c in citations:
                page = f", page {c['page']}" if c.get("page") else ""
                lines.append(
                    f"{c['number']}. {c.get('title') or c['source']} — `{c['source']}`{page}, "
                    f"characters {c['start']}–{c['end']}"
                )
                for q in c.get("quotes") or []:
                    lines.append(f"   > {' '.join(q['text'].split())}")
            if citations:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def _own(self, db: sqlite3.Connection, user: str, conversation: str) -> dict:
        """The conversation's row when it is the user's; another user's is "not found" too,
        so its existence is not given away."""
        row = db.execute(
            "SELECT id, title, collection, created, updated FROM conversations "
            "WHERE id=? AND user=?",
            (str(conversation), user),
        ).fetchone()
        if row is None:
            raise RagError(f"there is no saved conversation {conversation!r}")
        return dict(zip(("id", "title", "collection", "created", "updated"), row))

    # -- feedback --------------------------------------------------------------------------

    def rate(
        self,
        user: str,
        turn: int,
        rating: str | int,
        comment: str = "",
        right_answer: str = "",
        right_source: str | None = None,
    ) -> int:
        """Record (or replace) the user's thumbs up or down on one saved answer, with an
        optional comment, the right answer and the document that holds it ("" for "no document
        does"); the question, answer, passages and settings are kept with it."""
        value = RATINGS.get(rating, rating) if isinstance(rating, str) else rating
        if value not in (1, -1):
            raise RagError(f"a rating is up or down, not {rating!r}")
        with self._db() as db:
            row = db.execute(
                "SELECT t.conversation, t.question, t.answer, t.result, t.settings, c.collection "
                "FROM turns t JOIN conversations c ON c.id = t.conversation "
                "WHERE t.id=? AND c.user=?",
                (int(turn), user),
            ).fetchone()
            if row is None:
                raise RagError(f"there is no saved answer {turn!r} to rate")
            conversation, question, answer, result, settings, collection = row
            earlier = db.execute(
                "SELECT question, answer FROM turns WHERE conversation=? AND id<? ORDER BY id",
                (conversation, int(turn)),
            ).fetchall()
            history = [
                m
                for q, a in earlier
                for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
            ]
            # Rating again replaces the rating but keeps its id (an exported question's id).
            db.execute(
                "INSERT INTO feedback (user, turn, rating, comment, right_answer, right_source, "
                "question, history, answer, result, settings, collection, created) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(turn) DO UPDATE SET "
                "rating=excluded.rating, comment=excluded.comment, "
                "right_answer=excluded.right_answer, right_source=excluded.right_source, "
                "created=excluded.created",
                (
                    user,
                    int(turn),
                    value,
                    str(comment or "").strip(),
                    str(right_answer or "").strip(),
                    right_source,
                    question,
                    json.dumps(history, ensure_ascii=False),
                    answer,
                    result,
                    settings,
                    collection,
                    time.time(),
                ),
            )
            return int(
                db.execute("SELECT id FROM feedback WHERE turn=?", (int(turn),)).fetchone()[0]
            )

    def feedback(self, user: str | None, collection: str | None = None) -> list[dict]:
        """The feedback given by `user` (everyone's with None: for the data folder's owner at
        the command line), oldest first."""
        sql = (
            "SELECT id, user, turn, rating, comment, right_answer, right_source, question, "
            "history, answer, result, settings, collection, created FROM feedback WHERE 1=1"
        )
        args: list = []
        if user is not None:
            sql += " AND user=?"
            args.append(user)
        if collection is not None:
            sql += " AND collection=?"
            args.append(collection)
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        keys = [
            "id",
            "user",
            "turn",
            "rating",
            "comment",
            "right_answer",
            "right_source",
            "question",
            "history",
            "answer",
            "result",
            "settings",
            "collection",
            "created",
        ]
        out = []
        for r in rows:
            item = dict(zip(keys, r))
            for key in ("history", "result", "settings"):
                item[key] = json.loads(item[key])
            out.append(item)
        return out


def title_of(question: str) -> str:
    """A conversation's first title: its first question, shortened at a word."""
    text = " ".join(str(question).split())
    if len(text) <= TITLE_CHARS:
        return text or "Untitled"
    return text[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


def questions(rows: Sequence[dict]) -> tuple[list[dict], list[str]]:
    """Feedback rows as questions in the seed_dev.jsonl format of `rag eval`, and why the
    rows that cannot be one were left out.

    - thumbs up on an answer: the document it cites first holds the answer;
    - thumbs up on "the documents don't say": an unanswerable question (gold_doc null);
    - thumbs down: the document the user named holds the answer ("" for "no document does":
      unanswerable); without one the row is left out, as nothing says what would be right.
    The right answer the user typed, if any, becomes the words an answer must contain.
    """
    out: list[dict] = []
    skipped: list[str] = []
    for row in rows:
        result = row["result"]
        item = {"id": f"feedback-{row['id']}", "question": row["question"]}
        item["history"] = row["history"]
        answered = result.get("outcome", "answered") == "answered" and result.get("citations")
        source = row["right_source"]
        if source is None and row["rating"] > 0:
            source = result["citations"][0]["source"] if answered else ""
        if source is None:
            skipped.append(
                f"feedback {row['id']} ({row['question']!r}): thumbs down without the "
                "document that holds the right answer; add it in the page to export it"
            )
            continue
        item["gold_doc"] = source or None
        if row["right_answer"] and source:
            item["must"] = [[row["right_answer"]]]
        item["feedback"] = {
            "rating": "up" if row["rating"] > 0 else "down",
            "comment": row["comment"],
            "answer": row["answer"],
            "collection": row["collection"],
        }
        out.append(item)
    return out, skipped
