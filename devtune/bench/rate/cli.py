"""`devtune bench rate` flags: a preset (--quick or the full sweep) and overrides of its sizes."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from devtune.bench.rate.config import FULL, QUICK, RateSweep
from devtune.bench.rate.results import RateReport

__all__ = ["add_arguments", "run", "sweep_from_args"]

log = logging.getLogger("devtune.bench.rate")


def _points(text: str) -> tuple[tuple[int, float], ...]:
    points = []
    for item in text.split(","):
        try:
            bits, rate_lambda = item.split(":")
            point = (int(bits), float(rate_lambda))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad point {item!r}; write BITS:LAMBDA, e.g. 4:5e-4") from None
        if point[0] not in (2, 4, 8) or point[1] < 0:
            raise argparse.ArgumentTypeError(f"bad point {item!r}; bits is 2, 4 or 8 and lambda >= 0")
        points.append(point)
    return tuple(points)


def _qualities(text: str) -> tuple[int, ...]:
    try:
        qualities = tuple(int(q) for q in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad qualities {text!r}; write e.g. 10,25,50") from None
    if not qualities or any(not 1 <= q <= 95 for q in qualities):
        raise argparse.ArgumentTypeError(f"JPEG qualities must be in 1..95, got {text!r}")
    return qualities


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 2 points, 2048 train / 500 test samples, 3 epochs (a few minutes)")
    parser.add_argument("--points", type=_points, help="sweep as BITS:LAMBDA,... (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="epochs for every model (full default 6)")
    parser.add_argument("--train-samples", type=int, help="training split size (full default 8000)")
    parser.add_argument("--test-samples", type=int, help="test split size (full default 1000)")
    parser.add_argument("--qualities", type=_qualities, help="JPEG qualities, e.g. 10,25,50,75,90")
    parser.add_argument("--jpeg-augment", action=argparse.BooleanOptionalAction, default=None,
                        help="train a separate cloud-only model on JPEG-augmented images (default: off, "
                        "the reference model serves the cloud-only path)")
    parser.add_argument("--seed", type=int, help="data and training seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")


def sweep_from_args(args: argparse.Namespace) -> RateSweep:
    preset = QUICK if args.quick else FULL
    overrides = {
        "points": args.points, "epochs": args.epochs, "train_samples": args.train_samples,
        "test_samples": args.test_samples, "jpeg_qualities": args.qualities,
        "jpeg_augment": args.jpeg_augment, "seed": args.seed,
    }
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import torch

    from devtune.bench.output import emit_report
    from devtune.bench.rate.report import render_table, report_json
    from devtune.bench.rate.sweep import measure

    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = sweep_from_args(args)
    plot = Path(args.out).with_suffix(".png") if args.out else Path("results/bench-rate.png")
    log.info("rate sweep: %d points, %d epochs, %d train / %d test samples",
             len(sweep.points), sweep.epochs, sweep.train_samples, sweep.test_samples)

    def measured() -> RateReport:
        report = measure(sweep, plot)
        if args.json:  # the table joins the logs; stdout holds the one JSON object
            print(render_table(report), file=sys.stderr)
        return report

    return emit_report(args, measured, report_json, render_table)
