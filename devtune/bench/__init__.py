"""`devtune bench KIND`: measurements that print a table and, with --json, one JSON object.

Each kind is a module with ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports happen inside ``run`` so ``devtune --help`` stays light.
"""

# (This docstring is `devtune bench --help`.) A kind is a module or a package (rate/,
# serve/); next to the kinds:
#
#     output.py     the one JSON writer: the table, or --json one object on stdout, and --out
#     bundles.py    the bundle a benchmark measures (the default one is trained when missing)
#     loadgen/      the bounded HTTP load generator (closed-loop levels, open-loop overload)
#     traffic.py    device clients kept busy in the background, for runs that change a server under load

from __future__ import annotations

import argparse
import importlib

from devtune.bench.output import emit_report, stdout_to_stderr

__all__ = ["KINDS", "add_bench_command", "emit_report", "stdout_to_stderr"]

KINDS = {
    "rate": "rate-accuracy sweep against float32, uint8, zstd, PNG and JPEG baselines",
    "serve": "load generator against the real server: batching, encodings, overload, many tasks",
    "tune": "held-out task: tuned decoder vs joint training vs device fallback head",
    "link": "split vs cloud-only (PNG, matched JPEG) vs device-only vs auto over emulated links (root)",
    "transfer": "the held-out suite: tuned on the frozen bundle vs 16x16 pixel probe vs joint training",
    "entropy": "rANS coder alone: encode / decode us and bytes per sample on a 64 x 8 message (CPU, seconds)",
    "split": "a pre-trained encoder (MiniLM) split at several points: tasks vs unsplit, bytes, device ms, scratch",
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
