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
LlamaIndex (issue 7). Every figure is a ratio of two measurements taken in the same run on the
same machine, so the noise of a shared machine largely cancels; absolute times stand beside it.
Each section says when and where it was measured and the exact command; `make bench` runs them
all, `make bench-quick` a shorter version, `python -m bench NAME` one of them (see `bench/`).
"""
_SECTION = re.compile(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)
_TARGETS = re.compile(r"<!-- targets: (.*?) -->")


def target(
    name: str, measured: float | None, limit: float, detail: str, higher: bool = False
) -> dict:
    """One target: met when `measured` ≤ `limit` (or ≥ with `higher`); `detail` gives the
    numbers behind it (e.g. "ours 812 passages/s, raw 851 passages/s")."""
    met = measured is not None and (measured >= limit if higher else measured <= limit)
    return {"name": name, "measured": measured, "limit": limit, "met": met, "detail": detail}


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


def provenance(began: datetime.datetime | None = None, cmd: str | None = None) -> str:
    """The lines under a section heading: date, machine, versions, command."""
    m, v = machine(), versions()
    when = (began or datetime.datetime.now().astimezone()).isoformat(timespec="seconds")
    return (
        f"- Run: {when}, `{cmd or command()}`\n"
        f"- Machine: {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['cpu']} "
        f"({' '.join(m['flags']) or 'no SIMD flags read'}); {m['platform']}; "
        f"load average at the end {m['load'][0]} / {m['load'][1]} / {m['load'][2]}\n"
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
) -> Path:
    """Put one benchmark's section into BENCHMARKS.md, replacing its previous one in place."""
    body = markdown.strip() + "\n"
    if targets:
        body += "\n" + target_table(targets)
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n{provenance(began, cmd)}\n{body}\n"
        f"<!-- targets: {json.dumps(list(targets), ensure_ascii=False)} -->\n"
        f"<!-- /bench:{name} -->\n"
    )
    text = path.read_text(encoding="utf-8") if path.exists() else HEAD
    sections = {m.group(1): m.group(0) for m in _SECTION.finditer(text)}
    sections[name] = section
    known = [n for n in ORDER if n in sections] + [n for n in sections if n not in ORDER]
    parts = [HEAD.strip() + "\n", summary({n: sections[n] for n in known})]
    parts += [sections[n] for n in known]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def summary(sections: dict[str, str]) -> str:
    """The table of every section's targets, met or missed."""
    rows = []
    for name, section in sections.items():
        found = _TARGETS.search(section)
        for t in json.loads(found.group(1)) if found else []:
            rows.append((name, t))
    if not rows:
        return ""
    lines = [
        "## Targets\n",
        "| benchmark | target | measured | met | numbers |",
        "|---|---|---|---|---|",
    ]
    for name, t in rows:
        lines.append(
            f"| {name} | {t['name']} | {fmt(t['measured'])} | {'met' if t['met'] else '**missed**'} "
            f"| {t['detail']} |"
        )
    return "\n".join(lines) + "\n"


def target_table(targets: Sequence[dict]) -> str:
    lines = ["| target | measured | met | numbers |", "|---|---|---|---|"]
    for t in targets:
        lines.append(
            f"| {t['name']} | {fmt(t['measured'])} | {'met' if t['met'] else '**missed**'} "
            f"| {t['detail']} |"
        )
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
