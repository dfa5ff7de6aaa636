"""The `rag` command: parse flags, build the config, make one library call, print."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import Config, RagError, filters
from .config import DEFAULT_COLLECTION, INDEX_TYPES
from .workspace import commands as workspace_commands

MODEL_HELP = "answer model: a preset name, a .gguf path or openai:URL[#MODEL]"


def _config(args: argparse.Namespace, create: bool = False) -> Config:
    """The settings the flags give; a --collection must exist (or is made, with `create`)."""
    from .workspace import collections

    options = {
        "collection": getattr(args, "collection", None),
        "index_dir": getattr(args, "index_dir", None),
        "store": getattr(args, "store", None),
        "ray": getattr(args, "ray", None),
        "index_type": getattr(args, "index_type", None),
        "model": getattr(args, "model", None),
        "embed_model": getattr(args, "embed_model", None),
        "chunk_tokens": getattr(args, "chunk_tokens", None),
        "k": getattr(args, "k", None),
        "retrieval": getattr(args, "retrieval", None),
    }
    config = Config.load(**options)
    if create:
        collections.create(config, config.collection, exist_ok=True)
    else:
        collections.get(config, config.collection)
    return config


def _builds_missing(args: argparse.Namespace, config: Config) -> bool:
    """Whether a missing index is built on first use: only the default collection's own."""
    return args.index_dir is None and config.collection == DEFAULT_COLLECTION


def _print_summary(summary) -> None:  # noqa: ANN001 - rag.IndexSummary
    kind = "full rebuild" if summary.full else "update"
    print(
        f"{summary.index_dir}: {kind} in {summary.seconds:.1f} s — {summary.documents} documents, "
        f"{summary.chunks} passages ({summary.embedded} embedded)"
    )
    print(
        f"  added {len(summary.added)}, updated {len(summary.updated)}, "
        f"removed {len(summary.removed)}, unchanged {summary.unchanged}, "
        f"skipped {len(summary.skipped)}"
    )
    for source, reason in summary.skipped:
        print(f"  skipped {source}: {reason}")


def cmd_index(args: argparse.Namespace) -> int:
    from .ingest import progress_bar
    from .pipeline import Engine

    config = _config(args, create=True)
    engine = Engine(config)
    paths = args.paths or None
    _print_summary(engine.build(paths, full=args.full, progress=progress_bar()))
    if args.watch:
        from .watch import watch

        watch(engine, paths, on_update=_print_summary)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .pipeline import Engine

    config = _config(args)
    engine = Engine(config, build_missing=_builds_missing(args, config))
    hits = engine.search(args.query, args.k, args.where)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return 0
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        page = f", page {c.page}" if c.page else ""
        print(f"{rank}. [{hit.score:.3f}] {c.source} (chars {c.start}-{c.end}{page}) {c.title}")
        print(f"   {_excerpt(c.original or c.text)}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from .pipeline import Engine
    from .types import Answer

    config = _config(args)
    engine = Engine(config, build_missing=_builds_missing(args, config))
    result: Answer | None = None
    streamed = []
    for item in engine.stream(args.question, k=args.k, where=args.where):
        if isinstance(item, Answer):
            result = item
        elif not args.json:
            streamed.append(item)
            print(item, end="", flush=True)
    assert result is not None
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return 0
    print("\n")
    if result.text != "".join(streamed).strip():  # citations were renumbered or checked
        print(f"Answer: {result.text}")
    if result.outcome == "withheld":
        print(f"(an answer was written but not shown: {result.reason})")
    for c in result.citations:
        page = f", page {c.page}" if c.page else ""
        print(f"[{c.number}] {c.title} — {c.source}{page}")
        for q in c.quotes or ():
            print(f"    “{_excerpt(q.text)}”")
        if not c.quotes:
            print(f"    {_excerpt(c.text)}")
    return 0


def _guard(args: argparse.Namespace, what: str, login: bool, share: bool = False) -> None:
    """Warn when `what` will be open to the network without a login; stop if the port is
    taken."""
    from . import web

    if not login and (share or web.open_to_network(args.host)):
        print(
            f"warning: {what} will be open to the network ({args.host}) without a login: "
            'set RAG_AUTH="user:password"',
            file=sys.stderr,
        )
    web.check_port(args.host, args.port)


def _started(args: argparse.Namespace, what: str, login: bool, share: bool = False):  # noqa: ANN202 - rag.Engine
    """The engine of a server command, its index open and models loaded (see `_guard`)."""
    from . import web
    from .pipeline import Engine

    _guard(args, what, login, share)
    config = _config(args)
    engine = Engine(config, build_missing=_builds_missing(args, config))
    print("Opening the index (the first start builds it) and loading the models…", file=sys.stderr)
    for problem in web.warm(engine):
        print(f"warning: {problem}", file=sys.stderr)
    return engine


def cmd_chat(args: argparse.Namespace) -> int:
    from . import web

    auth = web.login(args.auth, require_env=args.auth_from_env)
    engine = _started(args, "the page", auth is not None, args.share)
    web.launch(web.build_app(engine), host=args.host, port=args.port, share=args.share, auth=auth)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from . import web
    from .serve import openai_api

    auth = web.login()
    engine = _started(args, "the API", auth is not None)
    key = "the password of RAG_AUTH" if auth else "none needed"
    print(
        f"OpenAI-compatible API at http://{args.host}:{args.port}/v1 (model "
        f"{openai_api.model_name(engine)!r}, API key: {key})",
        file=sys.stderr,
    )
    openai_api.run(engine, host=args.host, port=args.port, auth=auth)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from .pipeline import Engine
    from .serve import mcp as mcp_server

    http = args.transport == "http"
    if http:
        from . import web

        if web.open_to_network(args.host):
            # The MCP transport has no login: the documents would be open to the network.
            raise RagError(
                f"rag mcp serves HTTP without a login, so it binds only to this machine, not "
                f"{args.host}: use --host 127.0.0.1 (and a proxy with a login to reach it)"
            )
        web.check_port(args.host, args.port)
    config = _config(args)
    engine = Engine(config, build_missing=_builds_missing(args, config))
    index = engine.index  # a missing or damaged index stops here, with one line
    where = f"http://{args.host}:{args.port}/mcp" if http else "stdio"
    print(
        f"MCP server on {where}: {len(index.manifest.get('documents', {}))} documents, "
        f"{index.size} passages ({engine.config.index_dir})",
        file=sys.stderr,  # over stdio, stdout is the protocol's
    )
    mcp_server.run(engine, args.transport, host=args.host, port=args.port)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from . import models

    config = _config(args)
    names = args.names or [config.model]
    for name in names:
        print(f"{name}: {models.resolve(name, Path(config.models_dir))}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import format_table, run

    report = run(
        args.questions,
        _config(args),
        retrieval_only=args.retrieval_only,
        limit=args.limit,
        seed=args.seed,
        work_dir=args.work_dir,
        part=args.part,
    )
    print(format_table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", "utf-8")
        print(f"\nreport: {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .confidence import CHOSEN
    from .evaluate import calibrate

    features = tuple(args.features.split(",")) if args.features else CHOSEN
    text, calibration = calibrate(
        args.reports, args.refusal, args.threshold, features, args.max_loss
    )
    print(text)
    if args.out and calibration is not None:
        calibration.save(args.out)
        print(f"\ncalibration: {args.out} (use it with RAG_CALIBRATION={args.out})")
    return 0


def _part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N, e.g. 1/2") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be between 1 and N")
    return i, n


def _excerpt(text: str, width: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rag", description="Ask questions about your own documents, offline, with citations."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--index-dir", type=Path, help="index folder (default: index/seeds)")
        sp.add_argument(
            "--store",
            metavar="URI",
            help="keep the index in Milvus: milvus:PATH.db (Milvus Lite) or "
            "milvus://HOST:PORT/NAME (default: RAG_STORE, else the FAISS folder --index-dir)",
        )
        sp.add_argument(
            "--collection",
            help='a named collection (see `rag collections`; default: RAG_COLLECTION or "default")',
        )

    def where(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--where",
            action="append",
            metavar="KEY=VALUE",
            help=f"only documents matching; repeatable: {filters.HELP}",
        )

    s = sub.add_parser("index", help="build or update an index from files and folders")
    s.add_argument("paths", nargs="*", type=Path, help="files or folders (default: as before)")
    common(s)
    s.add_argument("--full", action="store_true", help="re-embed everything")
    s.add_argument("--watch", action="store_true", help="keep running and update on changes")
    s.add_argument("--embed-model", help="sentence-transformers model name or folder")
    s.add_argument("--chunk-tokens", type=int, help="target word pieces per passage")
    s.add_argument(
        "--index-type",
        choices=INDEX_TYPES,
        help="how vectors are searched (default: RAG_INDEX_TYPE, else auto; see docs/SCALE.md)",
    )
    s.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="read, cut and embed on a Ray cluster: its address, or none for one started here "
        "(default: RAG_RAY, else this process alone)",
    )
    s.set_defaults(run=cmd_index)

    s = sub.add_parser("search", help="show the passages that best match a query")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    common(s)
    where(s)
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(run=cmd_search)

    s = sub.add_parser("ask", help="answer a question with citations")
    s.add_argument("question")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("-k", type=int, help="passages given to the model")
    common(s)
    where(s)
    s.add_argument("--json", action="store_true", help="print the Answer as JSON")
    s.set_defaults(run=cmd_ask)

    s = sub.add_parser("chat", help="open the chat page in the browser")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("-k", type=int, help="passages given to the model")
    common(s)
    s.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    s.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="ask visitors to log in (default: RAG_AUTH, if set; a flag shows in the process list)",
    )
    s.add_argument(
        "--auth-from-env", action="store_true", help='require the login in RAG_AUTH="user:password"'
    )
    s.set_defaults(run=cmd_chat)

    s = sub.add_parser(
        "serve",
        help="answer as an OpenAI-compatible API (/v1/chat/completions, /v1/models)",
        description='Serve the index as an OpenAI-compatible API. With RAG_AUTH="user:password" '
        "set, clients must send the password (or user:password) as their API key.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("-k", type=int, help="passages given to the model")
    common(s)
    s.set_defaults(run=cmd_serve)

    s = sub.add_parser(
        "mcp",
        help="serve search, answers and the documents to MCP clients (stdio or HTTP)",
        description="Serve the index as a Model Context Protocol server: tools `search` and "
        "`answer`, each indexed document as a resource. Over stdio the MCP client starts this "
        "command itself; with --transport http it listens at http://HOST:PORT/mcp.",
    )
    s.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="default: stdio")
    s.add_argument("--host", default="127.0.0.1", help="address for http (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8001, help="port for http (default 8001)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("-k", type=int, help="passages given to the model")
    common(s)
    s.set_defaults(run=cmd_mcp)

    s = sub.add_parser("models", help="check or assemble answer models")
    s.add_argument("names", nargs="*", help="preset names or paths (default: the configured one)")
    s.set_defaults(run=cmd_models)

    s = sub.add_parser("eval", help="score retrieval and answers on a set of questions")
    s.add_argument(
        "questions", type=Path, help="a questions .jsonl, a SQuAD .json or a BEIR folder"
    )
    s.add_argument("--retrieval-only", action="store_true", help="search only; no answer model")
    s.add_argument("--retrieval", choices=("dense", "lexical", "hybrid"), help="retrieval mode")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument(
        "-k", type=int, help="passages given to the model (retrieval is scored on max(10, k))"
    )
    common(s)
    s.add_argument("--out", type=Path, help="write the full per-question report as JSON here")
    s.add_argument("--limit", type=int, help="ask a random sample of this many questions")
    s.add_argument("--seed", type=int, default=0, help="seed of that sample (default 0)")
    s.add_argument(
        "--part",
        type=_part,
        metavar="I/N",
        help="only part I of N disjoint parts (by a hash of the question id), before sampling: "
        "tune on --part 1/2, report on --part 2/2",
    )
    s.add_argument(
        "--work-dir", type=Path, help="cache for indexes of SQuAD/BEIR sets (default: temp dir)"
    )
    s.set_defaults(run=cmd_eval)

    s = sub.add_parser(
        "calibrate",
        help="fit when to withhold an answer, from an eval report of the answer model",
    )
    s.add_argument("reports", type=Path, nargs="+", help="reports written by `rag eval --out`")
    s.add_argument(
        "--refusal",
        type=float,
        default=0.75,
        help="pick the threshold that refuses at least this share of unanswerable questions "
        "(default 0.75)",
    )
    s.add_argument("--threshold", type=float, help="use this threshold instead")
    s.add_argument(
        "--max-loss",
        type=float,
        help="instead: the highest threshold that loses at most this share of answerable "
        "accuracy (the shipped calibration used 0)",
    )
    s.add_argument(
        "--features",
        help="comma-separated signals to weigh (default: "
        "evidence,logprob_min,local,question_missing)",
    )
    s.add_argument(
        "--out", type=Path, help="write the calibration here (default: print the curve only)"
    )
    s.set_defaults(run=cmd_calibrate)
    workspace_commands.add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
