"""Tolerances and the targets of the rate benchmark: pure functions over measured numbers.

The targets are judged on the smallest sweep point whose every task is within tolerance
of the float32 reference; when none is, on the closest one, and the quality check fails.
"""

from __future__ import annotations

from devtune.bench.rate.results import Baseline, Check, PointResult, Targets, Tasks

__all__ = [
    "CODED_HEADER",
    "CODED_SLOPE",
    "MAX_CODER_US",
    "MIN_RATIO_FLOAT32",
    "MIN_RATIO_JPEG",
    "TOLERANCE",
    "evaluate_targets",
    "shortfall",
    "worst_shortfall",
]

MIN_RATIO_FLOAT32 = 100.0  # payload at least 100x smaller than the float32 split features
MIN_RATIO_JPEG = 4.0  # and 4x smaller than the smallest JPEG that reaches the same metrics
CODED_SLOPE, CODED_HEADER = 1.03, 16.0  # coded bytes <= 1.03 x ideal + 16
MAX_CODER_US = 200.0  # entropy encode + decode per sample
# kind -> (tolerance, relative?): how far from the reference a metric may fall.
TOLERANCE = {"classification": (0.01, False), "dense": (0.01, False), "regression": (0.05, True)}
_WITHIN = 1.0 + 1e-9  # exactly one tolerance behind still counts (0.90 - 0.89 == 0.010000000000000009)


def shortfall(kind: str, value: float, reference: float) -> float:
    """How far ``value`` falls behind ``reference``, in tolerances: <= 1 is within tolerance."""
    tol, relative = TOLERANCE[kind]
    higher = kind != "regression"
    behind = (reference - value) if higher else (value - reference)
    return behind / (tol * abs(reference) if relative else tol)


def worst_shortfall(tasks: Tasks, reference: Tasks, kinds: dict[str, str]) -> float:
    """The largest shortfall over the reference's tasks."""
    return max(shortfall(kinds[name], tasks[name], reference[name]) for name in reference)


def _rival(jpeg: list[Baseline], png: Baseline, point: Tasks, kinds: dict[str, str]) -> tuple[Baseline, str]:
    """The image baseline the point is compared with, and a note that says which and why."""
    reaching = [j for j in jpeg if worst_shortfall(j.tasks, point, kinds) <= _WITHIN]
    if reaching:
        rival = min(reaching, key=lambda j: j.bytes_per_sample)
        return rival, f"smallest JPEG with the point's metrics: quality {rival.quality}, {rival.bytes_per_sample:.0f} B"
    if jpeg:
        rival = min(jpeg, key=lambda j: (worst_shortfall(j.tasks, point, kinds), -j.bytes_per_sample))
        return rival, (
            f"no JPEG quality reached the point's metrics; compared with the closest, quality "
            f"{rival.quality} ({rival.bytes_per_sample:.0f} B, worst shortfall "
            f"{worst_shortfall(rival.tasks, point, kinds):.1f} tolerances)"
        )
    return png, f"no JPEG measured; compared with PNG ({png.bytes_per_sample:.0f} B)"


def evaluate_targets(
    points: list[PointResult],
    reference: Tasks,
    kinds: dict[str, str],
    float32_bytes: float,
    png: Baseline,
    jpeg: list[Baseline],
) -> Targets:
    """Judge the targets on the smallest point within tolerance of the reference.

    When no point is within tolerance the closest one (smallest worst shortfall) is
    judged and the quality check fails. "The smallest JPEG that reaches the same
    metrics" is the smallest whose every task is within tolerance of the judged point's
    own metrics; when no quality gets there, the closest JPEG (usually the highest
    quality) stands in and the note says so. PNG stands in only when there is no JPEG.
    """
    if not points:
        raise ValueError("no sweep points to judge; give at least one (bits, lambda)")
    ok = [p for p in points if worst_shortfall(p.tasks, reference, kinds) <= _WITHIN]
    best = (
        min(ok, key=lambda p: p.bytes_per_sample)
        if ok
        else min(points, key=lambda p: (worst_shortfall(p.tasks, reference, kinds), p.bytes_per_sample))
    )
    worst = worst_shortfall(best.tasks, reference, kinds)
    lagging = [n for n in reference if shortfall(kinds[n], best.tasks[n], reference[n]) > _WITHIN]
    rival, rival_note = _rival(jpeg, png, best.tasks, kinds)
    coded = best.coded
    checks = {
        "quality": Check(
            "every task within tolerance of the float32 reference (worst shortfall in tolerances)",
            round(worst, 3), 1.0, worst <= _WITHIN,
            "" if not lagging else "behind on: " + ", ".join(lagging),
        ),
        "vs_float32": Check(
            f"payload >= {MIN_RATIO_FLOAT32:.0f}x smaller than the float32 split features",
            round(float32_bytes / best.bytes_per_sample, 1), MIN_RATIO_FLOAT32,
            float32_bytes / best.bytes_per_sample >= MIN_RATIO_FLOAT32,
        ),
        "vs_jpeg": Check(
            f">= {MIN_RATIO_JPEG:.0f}x smaller than the smallest JPEG with the same metrics (cloud-only)",
            round(rival.bytes_per_sample / best.bytes_per_sample, 2), MIN_RATIO_JPEG,
            rival.bytes_per_sample / best.bytes_per_sample >= MIN_RATIO_JPEG, rival_note,
        ),
        "coded_vs_ideal": Check(
            f"coded bytes <= {CODED_SLOPE} x ideal + {CODED_HEADER:.0f} on every test sample "
            "(measured: worst coded - 1.03 x ideal, bytes)",
            round(coded.worst_excess_bytes, 2), CODED_HEADER, coded.worst_excess_bytes <= CODED_HEADER,
            f"mean coded / ideal = {coded.coded_over_ideal:.4f}",
        ),
        "coder_speed": Check(
            f"entropy encode + decode <= {MAX_CODER_US:.0f} us per sample (medians)",
            round(coded.encode_us + coded.decode_us, 1), MAX_CODER_US,
            coded.encode_us + coded.decode_us <= MAX_CODER_US,
            f"encode {coded.encode_us:.1f} us, decode {coded.decode_us:.1f} us",
        ),
    }
    return Targets(best.bits, best.rate_lambda, best.bytes_per_sample, bool(ok), checks)
