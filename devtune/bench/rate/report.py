"""What `devtune bench rate` shows: the JSON object (`--json`, and --out) and the table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from devtune.bench.rate.results import Baseline, PointResult, RateReport, Targets, Tasks
from devtune.bench.rate.targets import TOLERANCE

__all__ = ["render_table", "report_json"]


def _rounded(tasks: Tasks) -> Tasks:
    return {k: round(v, 4) for k, v in tasks.items()}


def _baseline_json(b: Baseline) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes_per_sample": round(b.bytes_per_sample, 2), "tasks": _rounded(b.tasks)}
    if b.quality is not None:
        out = {"quality": b.quality, **out}
    return out


def _point_json(p: PointResult) -> dict[str, Any]:
    return {
        "bits": p.bits, "lambda": p.rate_lambda,
        "bytes_per_sample": round(p.bytes_per_sample, 2),
        "ideal_bytes_per_sample": round(p.coded.ideal_bytes_per_sample, 2),
        "coded_over_ideal": round(p.coded.coded_over_ideal, 4),
        "encode_us": round(p.coded.encode_us, 1), "decode_us": round(p.coded.decode_us, 1),
        "uint8_bytes_per_sample": p.uint8_bytes_per_sample,
        "zstd_bytes_per_sample": round(p.zstd_bytes_per_sample, 2),
        "train_seconds": round(p.train_seconds, 1),
        "tasks": _rounded(p.tasks),
    }


def _targets_json(t: Targets) -> dict[str, Any]:
    return {
        "point": {
            "bits": t.bits, "lambda": t.rate_lambda,
            "bytes_per_sample": round(t.bytes_per_sample, 2),
            "within_tolerance": t.within_tolerance,
        },
        **{
            name: {"goal": c.goal, "measured": c.measured, "limit": c.limit, "pass": c.passed,
                   **({"note": c.note} if c.note else {})}
            for name, c in t.checks.items()
        },
        "all_pass": t.all_pass,
    }


def report_json(report: RateReport) -> dict[str, Any]:
    """The JSON object `--json` prints: plain types, finite numbers, stable key names."""
    from models.train import metric_for

    sweep = report.sweep
    model = asdict(sweep.model) if sweep.model is not None else None
    return {
        "config": {
            "points": [{"bits": b, "lambda": lam} for b, lam in sweep.points],
            "epochs": sweep.epochs, "train_samples": sweep.train_samples, "test_samples": sweep.test_samples,
            "jpeg_qualities": list(sweep.jpeg_qualities), "jpeg_augment": sweep.jpeg_augment,
            "seed": sweep.seed, "zstd_level": sweep.zstd_level, "model": model,
        },
        "reference": {
            "tasks": _rounded(report.reference),
            "model": "bits 8, lambda 0, decoders run on unquantized z (= float32 features at the split)",
        },
        "metrics": {
            name: {
                "metric": metric_for(kind)[0],
                "higher_is_better": metric_for(kind)[1],
                "tolerance": TOLERANCE[kind][0],
                "tolerance_is_relative": TOLERANCE[kind][1],
            }
            for name, kind in report.kinds.items()
        },
        "points": [_point_json(p) for p in report.points],
        "baselines": {
            "float32": _baseline_json(report.float32),
            "uint8": {**_baseline_json(report.uint8), "model": "reference, 8-bit symbols, raw-uint8 codec"},
            "zstd": {**_baseline_json(report.zstd), "model": f"reference, 8-bit symbols, zstd -{sweep.zstd_level}"},
            "png": _baseline_json(report.png),
            "jpeg": [_baseline_json(j) for j in report.jpeg],
            "cloud_only_clean": {"tasks": _rounded(report.cloud_clean)},
        },
        "targets": _targets_json(report.targets),
        "notes": report.notes,
        "plot": report.plot,
        "seconds": round(report.seconds, 1),
    }


def render_table(report: RateReport) -> str:
    names = list(report.reference)
    head = f"{'what':<22}{'B/sample':>10}{'x f32':>8}" + "".join(f"{n[:9]:>10}" for n in names)
    head += f"{'coded/ideal':>12}{'enc us':>8}{'dec us':>8}"
    f32 = report.float32.bytes_per_sample

    def row(label: str, size: float, tasks: Tasks, extra: str = "") -> str:
        cells = "".join(f"{tasks[n]:>10.3f}" for n in names)
        return f"{label:<22}{size:>10.1f}{f32 / size:>8.1f}{cells}{extra}"

    lines = [head, "-" * len(head)]
    lines.append(row("float32 (reference)", f32, report.reference))
    lines.append(row("uint8 (ref, raw)", report.uint8.bytes_per_sample, report.uint8.tasks))
    lines.append(row("zstd (ref symbols)", report.zstd.bytes_per_sample, report.zstd.tasks))
    lines.append(row("png (cloud-only)", report.png.bytes_per_sample, report.png.tasks))
    for j in report.jpeg:
        lines.append(row(f"jpeg q{j.quality} (cloud-only)", j.bytes_per_sample, j.tasks))
    for p in sorted(report.points, key=lambda p: p.bytes_per_sample):
        extra = f"{p.coded.coded_over_ideal:>12.4f}{p.coded.encode_us:>8.1f}{p.coded.decode_us:>8.1f}"
        lines.append(row(f"rans b{p.bits} lambda {p.rate_lambda:g}", p.bytes_per_sample, p.tasks, extra))
    t = report.targets
    lines.append("")
    lines.append(f"targets, judged on b{t.bits} lambda {t.rate_lambda:g} ({t.bytes_per_sample:.1f} B/sample"
                 f"{'' if t.within_tolerance else ', closest point: none within tolerance'}):")
    for name, c in t.checks.items():
        note = f"  ({c.note})" if c.note else ""
        lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {name:<15}{c.measured!s:>9} vs {c.limit:g}{note}")
    if report.plot:
        lines.append(f"\nplot: {report.plot}")
    return "\n".join(lines)
