"""Writing benchmark results into docs/BENCHMARKS.md: one section per benchmark, with provenance.

Every section is framed by HTML comments (``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->``)
and replaced in place when its benchmark runs again, so running one benchmark rewrites only its
own section. Each section opens with when, where (machine) and how (versions, exact command) it
was measured. The "Targets" table at the top is rebuilt from the targets each section records.

Use from any benchmark::

    from bench import report
    report.write_section(
        "answer",                                  # the section's name (its markers)
        "Answer latency",                          # its heading
        markdown,                                  # the body: tables and notes
        targets=[report.target("time to first token ≤ 1.05× raw", 1.03, 1.05, "answer() 0.91 s vs raw 0.88 s")],
    )
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DOC = PROJECT / "docs" / "BENCHMARKS.md"
# Sections appear in this order; others follow in the order they were first written.
ORDER = ("indexing", "retrieval", "answer", "startup", "llamaindex")
# The CPU flags that decide which kernels torch, FAISS and llama.cpp use.
FLAGS = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx_vnni",
    "neon",
    "asimd",
]
PACKAGES = {
    "torch": "torch",
    "faiss": "faiss-cpu",
    "sentence-transformers": "sentence-transformers",
    "transformers": "transformers",
    "llama-cpp-python": "llama_cpp_python",
    "llama-index-core": "llama-index-core",
    "bm25s": "bm25s",
    "numpy": "numpy",
}
HEAD = """# Benchmarks

Speed and memory of `rag`, side by side with the raw libraries it is built on and with
LlamaIndex. Every ratio pairs two measurements taken in the same run on the same machine,
interleaved over rounds (ours, baseline; baseline, ours; …), and is given as the median with
the spread over the rounds, so the noise of a shared machine shows instead of hiding. Each
section says when, at which commit and where it was measured, the load average at its start and
end, and the exact command; it also records the settings it ran at, and `make test` fails when
they are no longer the code's defaults (tests/test_benchmarks.py). `make bench` runs them all,
`python -m bench NAME` one of them (see `bench/`). Sections not re-run since the settings
changed are in [BENCHMARKS-history.md](BENCHMARKS-history.md), marked as not current.
"""
# The load average when the running benchmark started (set by `python -m bench`).
LOAD_AT_START: list[float] = []
_SECTION = re.compile(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)
_TARGETS = re.compile(r"<!-- targets: (.*?) -->")
_SETTINGS = re.compile(r"<!-- settings: (.*?) -->")


def target(
    name: str,
    measured: float | Sequence[float] | None,
    limit: float,
    detail: str,
    higher: bool = False,
) -> dict:
    """One target, checked against `limit` (measured ≤ limit, or ≥ with `higher`).

    `measured` is one figure or one per round (e.g. the ours/baseline ratio of each ABAB
    round): the median is reported with the spread (lowest, highest), and the target is *met*
    when the whole spread is on the right side of the limit, *missed* when all of it is on the
    wrong side, and *not shown* when the spread crosses it. `detail` gives the numbers behind
    it (e.g. "ours 812 passages/s, raw 851 passages/s")."""
    if measured is None:
        values: list[float] = []
    elif isinstance(measured, (int, float)):
        values = [float(measured)]
    else:
        values = [float(v) for v in measured]
    median = statistics.median(values) if values else None
    low, high = (min(values), max(values)) if values else (None, None)

    def good(v: float) -> bool:
        return v >= limit if higher else v <= limit

    if not values:
        status = "missed"
    elif all(good(v) for v in values):
        status = "met"
    elif not any(good(v) for v in values):
        status = "missed"
    else:
        status = "not shown"
    return {
        "name": name,
        "measured": None if median is None else round(median, 4),
        "spread": None if len(values) < 2 else [round(low, 4), round(high, 4)],
        "rounds": len(values),
        "limit": limit,
        "status": status,
        "detail": detail,
    }


def shipped() -> dict:
    """The settings the code ships with, as each section records them: `Config`'s defaults (not
    this environment's), what shapes an index's passages and vectors, how vectors are searched
    and how prompts are fed to the model. tests/test_benchmarks.py compares every section's
    record with this, so a section measured at other settings cannot stay on the page."""
    from dataclasses import fields

    from rag import Config, ingest, store
    from rag.generate import CHUNK

    config = Config()
    local = {"home", "corpus", "index_dir", "models_dir", "prompts_dir", "ocr_cache", "threads"}
    local |= {"data_dir", "collection"}  # where the user's documents and chats are kept
    local |= {"timeout"}  # how long a model server may take: shapes no measurement
    answer = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in local}
    return json.loads(
        json.dumps(
            {
                "config": answer,
                "index": ingest.settings(config),
                "search": {
                    "approximate_from": store.APPROXIMATE_FROM,
                    "ivf_lists_at_1m": store.ivf_lists(10**6),
                    "ivf_probe_share": store.IVF_PROBE_SHARE,
                    "hnsw": [store.HNSW_M, store.HNSW_EF_CONSTRUCTION, store.HNSW_EF_SEARCH],
                },
                "prompt_batch": CHUNK,
            },
            default=str,
        )
    )


def differences(recorded: dict | None, current: dict, where: str = "") -> list[str]:
    """The settings that differ between a section's record and `current`, as "path: was →
    now" lines (a section with no record differs in everything). A setting added to the code
    after a section was recorded matches it only at an "off" value (empty, as `Config.store`
    and `Config.ray` are: the behaviour from before they existed)."""
    if recorded is None:
        return [f"{where or 'settings'}: not recorded"]
    out = []
    for key in sorted(set(recorded) | set(current)):
        path = f"{where}.{key}" if where else key
        was, now = recorded.get(key), current.get(key)
        if key not in recorded and now in ("", None):
            continue
        if isinstance(was, dict) and isinstance(now, dict):
            out += differences(was, now, path)
        elif was != now:
            out.append(f"{path}: {was!r} → {now!r}")
    return out


def commit() -> str:
    """The commit measured, with "+changes" when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "rag", "prompts"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")  # fmt: skip


def sections(text: str) -> dict[str, dict]:
    """Each section of a BENCHMARKS.md text: its targets and recorded settings."""
    out = {}
    for m in _SECTION.finditer(text):
        body = m.group(0)
        targets = _TARGETS.search(body)
        settings = _SETTINGS.search(body)
        out[m.group(1)] = {
            "targets": json.loads(targets.group(1)) if targets else [],
            "settings": json.loads(settings.group(1)) if settings else None,
            "text": body,
        }
    return out


def machine() -> dict:
    """Cores, memory, CPU model and its SIMD flags, OS and the load when asked."""
    info: dict = {"cores": os.cpu_count(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        have = set(flags.group(1).split()) if flags else set()
        info["flags"] = [f for f in FLAGS if f in have]
    except OSError:
        info["cpu"], info["flags"] = platform.processor(), []
    try:
        mem = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"^MemTotal:\s*(\d+)", mem, re.MULTILINE).group(1))
        info["ram_gib"] = round(kib / 2**20, 1)
    except (OSError, AttributeError):
        info["ram_gib"] = None
    info["load"] = [round(x, 2) for x in os.getloadavg()]
    return info


def versions() -> dict:
    """Python and the versions of the libraries that do the work (read without importing)."""
    out = {"python": platform.python_version()}
    for label, dist in PACKAGES.items():
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = "not installed"
    return out


def command() -> str:
    """The command line of this process, as it would be typed in the project folder."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    exe = Path(argv[0])
    try:
        argv[0] = str(exe.resolve().relative_to(PROJECT)) if exe.is_absolute() else argv[0]
    except ValueError:
        argv[0] = exe.name
    return shlex.join(argv)


def provenance(
    began: datetime.datetime | None = None, cmd: str | None = None, load: Sequence[float] = ()
) -> str:
    """The lines under a section heading: date, commit, machine and its load, versions, command."""
    m, v = machine(), versions()
    when = (began or datetime.datetime.now().astimezone()).isoformat(timespec="seconds")
    before = f"at the start {' / '.join(str(x) for x in load)}, " if load else ""
    return (
        f"- Run: {when}, commit {commit()}, `{cmd or command()}`\n"
        f"- Machine: {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['cpu']} "
        f"({' '.join(m['flags']) or 'no SIMD flags read'}); {m['platform']}; "
        f"load average {before}at the end {m['load'][0]} / {m['load'][1]} / {m['load'][2]}\n"
        f"- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "\n"
    )


def write_section(
    name: str,
    title: str,
    markdown: str,
    targets: Sequence[dict] = (),
    began: datetime.datetime | None = None,
    cmd: str | None = None,
    path: Path = DOC,
    load: Sequence[float] = (),
) -> Path:
    """Put one benchmark's section into BENCHMARKS.md, replacing its previous one in place.
    `load` is the load average when the benchmark started (`machine()["load"]`)."""
    body = markdown.strip() + "\n"
    load = load or LOAD_AT_START
    if targets:
        body += "\n" + target_table(targets)
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n{provenance(began, cmd, load)}\n{body}\n"
        f"<!-- targets: {json.dumps(list(targets), ensure_ascii=False)} -->\n"
        f"<!-- settings: {json.dumps(shipped(), sort_keys=True)} -->\n"
        f"<!-- /bench:{name} -->\n"
    )
    text = path.read_text(encoding="utf-8") if path.exists() else HEAD
    found = {m.group(1): m.group(0) for m in _SECTION.finditer(text)}
    found[name] = section
    known = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]
    parts = [HEAD.strip() + "\n", summary({n: found[n] for n in known})]
    parts += [found[n] for n in known]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


STATUS = {"met": "met", "missed": "**missed**", "not shown": "*not shown*"}


def _row(t: dict) -> str:
    spread = t.get("spread")
    shown = f"{fmt(t['spread'][0])}–{fmt(t['spread'][1])}" if spread else "–"
    return (
        f"{t['name']} | {fmt(t['measured'])} | {shown} ({t.get('rounds', 1)}) | "
        f"{STATUS[t['status']]} | {t['detail']} |"
    )


def summary(texts: dict[str, str]) -> str:
    """The table of every section's targets: median, spread over rounds, met / missed / not
    shown, and the run and commit each comes from."""
    rows = []
    for name, section in texts.items():
        found = _TARGETS.search(section)
        run = re.search(r"^- Run: (\S+?)T.*?, commit (\S+),", section, re.MULTILINE)
        when = f"{run.group(1)}, {run.group(2)}" if run else "–"
        for t in json.loads(found.group(1)) if found else []:
            rows.append(f"| {name} | {_row(t)} {when} |")
    if not rows:
        return ""
    lines = [
        "## Targets\n",
        "A target is *met* when every round is on the right side of it, *missed* when none is, "
        "and *not shown* when the spread over the rounds crosses it.\n",
        "| benchmark | target | median | spread (rounds) | status | numbers | run, commit |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(lines + rows) + "\n"


def target_table(targets: Sequence[dict]) -> str:
    lines = ["| target | median | spread (rounds) | status | numbers |", "|---|---|---|---|---|"]
    lines += [f"| {_row(t)}" for t in targets]
    return "\n".join(lines) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats are shown with three significant digits."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
