"""`devtune bench KIND`: measurements that print a table and, with --json, one JSON object.

Each kind is a module with ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports happen inside ``run`` so ``devtune --help`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["KINDS", "add_bench_command", "emit_report", "stdout_to_stderr"]

log = logging.getLogger("devtune")

KINDS = {
    "rate": "rate-accuracy sweep against float32, uint8, zstd, PNG and JPEG baselines",
    "serve": "load generator against the real server: batching, encodings, overload, many tasks",
    "tune": "held-out task: tuned decoder vs joint training vs device fallback head",
}


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"devtune.bench.{args.kind}")
    code: int = module.run(args)
    return code


def add_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="benchmarks: " + ", ".join(KINDS), description=__doc__)
    kinds = bench.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, help_text in KINDS.items():
        parser = kinds.add_parser(kind, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument("--out", default=f"results/bench-{kind}.json", help="also write the JSON here")
        try:
            module = importlib.import_module(f"devtune.bench.{kind}")
        except ModuleNotFoundError:
            continue
        module.add_arguments(parser)
        parser.set_defaults(func=_run)


@contextmanager
def stdout_to_stderr() -> Iterator[IO[str]]:
    """Point fd 1 at stderr (child processes started meanwhile inherit that); yield the real stdout.

    With --json the one JSON object must be all that reaches stdout, whatever a server or
    a progress bar started during the measurement prints.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w") as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def emit_report(
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """Run a benchmark; print its table, or with --json one JSON object; write it to --out."""
    if args.json:
        with stdout_to_stderr() as stdout:
            report = measure(args)
            stdout.write(json.dumps(report) + "\n")
    else:
        report = measure(args)
        print(table(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        log.info("wrote %s", out)
    return 0
