"""The workspace's commands: `rag collections`, `rag chats` and `rag feedback`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..config import Config
from ..errors import RagError
from . import chats, collections


def workspace(config: Config) -> chats.Workspace:
    return chats.Workspace(config.data_dir)


def cmd_collections(args: argparse.Namespace) -> int:
    config = Config.load()
    if args.action == "create":
        made = collections.create(config, _name(args))
        print(f"created collection {made.name!r}: add files to {made.corpus}, then run ")
        print(f"  rag index --collection {made.name} [PATHS…]")
        return 0
    if args.action == "delete":
        found = collections.get(config, _name(args))
        if not args.yes:
            if not sys.stdin.isatty():
                raise RagError(f"deleting {found.name!r} needs --yes when not asked at a terminal")
            reply = input(
                f"Delete collection {found.name!r}: its index, its documents folder "
                f"{found.corpus} and its saved conversations? Type its name to confirm: "
            )
            if reply.strip() != found.name:
                print("not deleted")
                return 1
        collections.delete(config, found.name)
        workspace(config).delete_collection(found.name)
        print(f"deleted collection {found.name!r}")
        return 0
    for c in collections.listed(config):
        state = "indexed" if c.built else "not indexed yet"
        print(f"{c.name}\t{state}\t{c.corpus}\t{c.index_dir}")
    return 0


def _name(args: argparse.Namespace) -> str:
    if not args.name:
        raise RagError(f"`rag collections {args.action}` needs the collection's name")
    return args.name


def cmd_chats(args: argparse.Namespace) -> int:
    config = Config.load()
    saved = workspace(config)
    if args.action == "list":
        for c in saved.conversations(args.user, args.collection):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c["updated"]))
            print(f"{c['id']}\t{when}\t{c['collection']}\t{c['turns']} turns\t{c['title']}")
        return 0
    if not args.id:
        raise RagError(f"`rag chats {args.action}` needs a conversation id (see `rag chats list`)")
    if args.action == "export":
        text = saved.markdown(args.user, args.id)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            print(f"wrote {args.out}")
        else:
            print(text, end="")
    elif args.action == "rename":
        saved.rename(args.user, args.id, args.title or "")
        print(f"renamed {args.id}")
    elif args.action == "delete":
        saved.delete(args.user, args.id)
        print(f"deleted {args.id}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    config = Config.load()
    rows = workspace(config).feedback(args.user, args.collection)
    if args.rating:
        rows = [r for r in rows if r["rating"] == chats.RATINGS[args.rating]]
    if args.action == "list":
        for r in rows:
            mark = "up" if r["rating"] > 0 else "down"
            print(f"{r['id']}\t{mark}\t{r['collection']}\t{r['question']}\t{r['comment']}")
        return 0
    found, skipped = chats.questions(rows)
    lines = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in found)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    for reason in skipped:
        print(f"left out {reason}", file=sys.stderr)
    where = args.out or "standard output"
    print(f"{len(found)} questions to {where}; score them with `rag eval FILE`", file=sys.stderr)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Add the workspace's subcommands to the `rag` parser."""
    s = sub.add_parser(
        "collections",
        help="list, create or delete collections (named document sets with their own index)",
    )
    s.add_argument("action", nargs="?", choices=("list", "create", "delete"), default="list")
    s.add_argument("name", nargs="?", help="the collection's name (create, delete)")
    s.add_argument("--yes", action="store_true", help="delete without asking")
    s.set_defaults(run=cmd_collections)

    s = sub.add_parser("chats", help="list, export, rename or delete saved conversations")
    s.add_argument(
        "action", nargs="?", choices=("list", "export", "rename", "delete"), default="list"
    )
    s.add_argument("id", nargs="?", help="a conversation id (from `rag chats list`)")
    s.add_argument("title", nargs="?", help="the new title (rename)")
    s.add_argument("--user", default="", help='whose conversations (default: "", no login)')
    s.add_argument("--collection", help="only this collection's (list)")
    s.add_argument("--out", type=Path, help="write the Markdown here (export)")
    s.set_defaults(run=cmd_chats)

    s = sub.add_parser(
        "feedback",
        help="list the thumbs up/down given in the page, or export them as a question file",
        description="`rag feedback export` writes the rated answers as questions in the "
        "seed_dev.jsonl format, so `rag eval FILE` scores the engine on your own mistakes.",
    )
    s.add_argument("action", nargs="?", choices=("list", "export"), default="list")
    s.add_argument("--user", help="only this login's feedback (default: everyone's)")
    s.add_argument("--collection", help="only this collection's")
    s.add_argument("--rating", choices=("up", "down"), help="only these ratings")
    s.add_argument("--out", type=Path, help="write the questions here (default: stdout)")
    s.set_defaults(run=cmd_feedback)
