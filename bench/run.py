"""Run benchmarks and write their sections of docs/BENCHMARKS.md.

python -m bench                 # every section of docs/BENCHMARKS.md (about 75 minutes on 2 cores)
python -m bench --quick         # the same, smaller (a few minutes each)
python -m bench indexing        # one (or several) by name
python -m bench scale           # docs/SCALE.md (only by name: see EXTRA)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from bench import report

# name -> module in this package; each has run(quick) that writes its own section.
BENCHMARKS = {
    "indexing": "bench.indexing",
    "retrieval": "bench.retrieval",
    "answer": "bench.answer",
    "startup": "bench.startup",
    "llamaindex": "bench.llamaindex",
    "evidence": "bench.evidence",
    "remote": "bench.remote",
    "ocr": "bench.ocr",
    "scale": "bench.scale",  # writes docs/SCALE.md, not BENCHMARKS.md
}

# Run only when named: they write other pages than docs/BENCHMARKS.md, so one run of the rest
# regenerates that page's every section at one commit. `scale` needs the real corpus cached
# (python -m bench.realcorpus, an hour and a quarter) and a Ray cluster: `make bench-scale`.
EXTRA = {"scale"}


# A benchmark starts when the 1-minute load average is below this (nothing else running on
# the machine), or after WAIT seconds with a warning; the load at its start is recorded.
QUIET = 0.8
WAIT = 900


def wait_for_quiet() -> list[float]:
    """Wait until the machine is quiet (see QUIET); the load average then."""
    waited = 0
    while os.getloadavg()[0] > QUIET and waited < WAIT:
        if waited % 120 == 0:
            print(f"   load {os.getloadavg()[0]:.2f}: waiting for a quiet machine", file=sys.stderr)
        time.sleep(15)
        waited += 15
    load = [round(x, 2) for x in os.getloadavg()]
    if load[0] > QUIET:
        print(f"   WARNING: starting under load {load}", file=sys.stderr, flush=True)
    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--now", action="store_true", help="do not wait for a quiet machine (a trial run)"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: use {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or [n for n in BENCHMARKS if n not in EXTRA]:
        report.LOAD_AT_START[:] = (
            [round(x, 2) for x in os.getloadavg()] if args.now else wait_for_quiet()
        )
        began = time.perf_counter()
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        try:
            importlib.import_module(BENCHMARKS[name]).run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
