"""`devtune bench serve` flags, resolved into a ``Plan``, and the command."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from devtune.bench.bundles import DEFAULT_BUNDLE
from devtune.bench.serve.plan import Plan

__all__ = ["add_arguments", "plan_from_args", "run"]


def _ints(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,16, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="bundle to serve (default bundles/default, trained first if missing)")
    parser.add_argument("--quick", action="store_true",
                        help="short run (under 3 minutes): concurrency 1,4,32,64, 1 s per level")
    parser.add_argument("--concurrency", type=_ints, default=None,
                        help="closed-loop levels, also the raw decoder batch sizes (default 1,4,16,32,64)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per level (default 3)")
    parser.add_argument("--max-requests", type=int, default=20000, help="request budget per level")
    parser.add_argument("--encodings", default="msgpack,json",
                        help="msgpack (/v1/predict) and/or json (OIP /v2 infer); default both")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="server max_queue_delay_ms with batching on")
    parser.add_argument("--max-queue", type=int, default=128,
                        help="server max_queue: waiting requests beyond it are refused with 503")
    parser.add_argument("--overload-seconds", type=float, default=None, help="open-loop send time (default 4)")
    parser.add_argument("--overload-factor", type=float, default=2.0, help="offered rate / saturating rate")
    parser.add_argument("--connections", type=int, default=512, help="client connections in the overload run")
    parser.add_argument("--task-counts", type=_ints, default=None,
                        help="tasks asked in the many-task run (default 1,2,4,8,16,32; at most 32)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as lost")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                        help="also run the server of the source tree DIR side by side, e.g. "
                             "`git worktree add /tmp/baseline aa8d86b` (protocol v1 bodies, batching on)")
    parser.add_argument("--baseline-stack", choices=["h11", "auto"], default="h11",
                        help="the baseline's HTTP stack: h11 (asyncio + h11, what it was installed with; "
                             "default) or auto (uvicorn's pick of what is installed now)")
    parser.add_argument("--baseline-protocol", type=int, choices=[1, 2], default=1,
                        help="the request protocol the baseline is sent (default 1: a tree before v2 knows no other)")
    parser.add_argument("--compare-stack", action="store_true",
                        help="also run this tree's server on asyncio + h11, to weigh the HTTP stack")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the levels in this many interleaved rounds: median throughput and CPU, "
                             "percentiles over all rounds (default 1; more on a busy machine)")
    parser.add_argument("--workers-scaling", type=_ints, default=None, metavar="N,N",
                        help="also compare servers of N worker processes each (e.g. 1,2), batching on, msgpack, "
                             "at concurrency 32 (or the highest --concurrency)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also profile each batching server with py-spy at concurrency 1 and 32 and "
                             "report where a request's time goes; collapsed stacks are written to DIR")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: pre-built HTTP/1.1 on asyncio streams (cheap, default); httpx: AsyncClient")


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The flags resolved into one ``Plan``; --quick picks shorter defaults for what was not given."""
    quick = bool(args.quick)
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    unknown = sorted(set(encodings) - {"msgpack", "json"})
    if unknown or not encodings:
        raise ValueError(f"unknown encoding(s) {unknown or encodings}; use msgpack, json or both")
    seconds = args.seconds if args.seconds is not None else (1.0 if quick else 3.0)
    if seconds <= 0 or args.max_requests < 1 or args.timeout <= 0 or args.rounds < 1:
        raise ValueError("--seconds, --max-requests, --timeout and --rounds must be positive")
    task_counts = args.task_counts or [1, 2, 4, 8, 16, 32]
    if task_counts[-1] > 32:
        raise ValueError(f"the many-task bundle has 32 tasks; ask for at most 32, not {task_counts[-1]}")
    rounds = 2 if quick else 3
    concurrency = args.concurrency or ([1, 4, 32, 64] if quick else [1, 4, 16, 32, 64])
    baseline = args.baseline_src
    if baseline is not None and not (baseline / "cloud_server" / "__init__.py").is_file():
        raise ValueError(f"--baseline-src {baseline} holds no cloud_server package; pass the root of a "
                         "source tree, e.g. one made with `git worktree add /tmp/baseline aa8d86b`")
    return Plan(
        concurrency=concurrency,
        seconds=seconds,
        warmup_s=min(0.5, seconds / 3),
        max_requests=args.max_requests,
        encodings=encodings,
        overload_seconds=args.overload_seconds if args.overload_seconds is not None else (2.0 if quick else 4.0),
        task_counts=task_counts,
        task_rounds=rounds,
        task_seconds=min(seconds, 2.0) / rounds,
        raw_seconds=min(seconds / 3, 1.0),
        client="httpx" if args.client == "httpx" else "raw",
        timeout=args.timeout,
        delay_ms=args.delay_ms,
        max_queue=args.max_queue,
        overload_factor=args.overload_factor,
        connections=args.connections,
        baseline_src=baseline.resolve() if baseline is not None else None,
        baseline_stack="auto" if args.baseline_stack == "auto" else "h11",
        baseline_protocol=args.baseline_protocol,
        compare_stack=bool(args.compare_stack),
        rounds=args.rounds,
        workers_counts=tuple(args.workers_scaling or ()),
        workers_concurrency=32 if 32 in concurrency else max(concurrency),
        profile_dir=args.profile,
    )


def run(args: argparse.Namespace) -> int:
    from devtune.bench.output import emit_report
    from devtune.bench.serve.report import render_table, report_json
    from devtune.bench.serve.sweep import measure

    # httpx logs every request at INFO: costly in a load generator, and noise.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return emit_report(args, lambda: measure(plan_from_args(args), Path(args.bundle)), report_json, render_table)
