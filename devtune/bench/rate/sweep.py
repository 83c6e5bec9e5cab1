"""The rate sweep: train every model of a ``RateSweep`` and measure it all into one ``RateReport``.

Every model (sweep points, reference, cloud-only) gets the same schedule, the same data
and the same seed; each point is measured with the rANS tables its own bundle would carry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devtune.bench.rate.baselines import cloud_only_baselines, reference_baselines
from devtune.bench.rate.config import RateSweep
from devtune.bench.rate.results import PointResult, RateReport, format_tasks
from devtune.bench.rate.targets import evaluate_targets

if TYPE_CHECKING:  # the CLI imports this package to build its parser: no torch at import time
    from models.data import Dataset
    from models.train import TrainResult

__all__ = ["measure"]

log = logging.getLogger("devtune.bench.rate")


def _measure_point(
    result: TrainResult, bits: int, rate_lambda: float, train_data: Dataset, test: Dataset, sweep: RateSweep
) -> PointResult:
    from devtune.bench.rate.coding import code_each, device_symbols, representation, zstd_sizes
    from models.train import evaluate

    symbols = device_symbols(result, test)
    coded = code_each(representation(result, train_data, "rans", sweep.histogram_samples), symbols)
    return PointResult(
        bits=bits, rate_lambda=rate_lambda, coded=coded,
        uint8_bytes_per_sample=float(symbols[0].size),
        zstd_bytes_per_sample=float(np.mean(zstd_sizes(symbols, sweep.zstd_level))),
        train_seconds=result.seconds, tasks=evaluate(result, test),
    )


def measure(
    sweep: RateSweep,
    plot_path: str | Path | None = None,
    progress: Callable[[str], None] = log.info,
) -> RateReport:
    """Train the sweep, the reference and the cloud-only model; measure all on the test split."""
    from devtune.bench.rate.baselines import jpeg_augmented
    from devtune.bench.rate.plot import plot
    from models.data import make_shapes
    from models.model import ModelConfig
    from models.train import TrainConfig, train

    started = time.perf_counter()
    base = sweep.model if sweep.model is not None else ModelConfig()
    train_data = make_shapes("train", count=sweep.train_samples, seed=sweep.seed)
    test = make_shapes("test", count=sweep.test_samples, seed=sweep.seed)

    def fit(bits: int, rate_lambda: float, data: Dataset, what: str) -> TrainResult:
        tcfg = TrainConfig(epochs=sweep.epochs, rate_lambda=rate_lambda, seed=sweep.seed)
        result = train(replace(base, bits=bits), tcfg, data, progress=False)  # type: ignore[arg-type]
        progress(f"trained {what} (bits {bits}, lambda {rate_lambda:g}) in {result.seconds:.0f} s")
        return result

    # The float32 split model: 256 levels in training (straight-through error <= 1/510),
    # no rate term, then run with z unquantized.
    ref = fit(8, 0.0, train_data, "reference")
    kinds: dict[str, str] = {h.name: h.kind for h in ref.heads}
    float32, uint8, zstd = reference_baselines(ref, train_data, test, sweep.zstd_level, sweep.histogram_samples)

    points = []
    for bits, rate_lambda in sweep.points:
        point = _measure_point(fit(bits, rate_lambda, train_data, "sweep point"), bits, rate_lambda,
                               train_data, test, sweep)
        progress(f"  {point.bytes_per_sample:.1f} B/sample, {format_tasks(point.tasks)}")
        points.append(point)

    # Cloud-only: the same architecture, whole, on the decoded image.
    if sweep.jpeg_augment:
        augmented = jpeg_augmented(train_data, sweep.jpeg_qualities, sweep.seed)
        cloud = fit(8, 0.0, augmented, "cloud-only model on JPEG-augmented images")
        note = ("cloud-only model: trained on the train split with half its images JPEG-coded at "
                f"qualities {list(sweep.jpeg_qualities)}")
    else:
        cloud, note = ref, "cloud-only model: the reference model (trained on clean images)"
    cloud_clean, png, jpeg = cloud_only_baselines(cloud, test, sweep.jpeg_qualities, progress)

    targets = evaluate_targets(points, float32.tasks, kinds, float32.bytes_per_sample, png, jpeg)
    report = RateReport(
        sweep, float32.tasks, kinds, points, float32, uint8, zstd, png, jpeg, targets, cloud_clean,
        seconds=time.perf_counter() - started, notes=[note],
    )
    if plot_path is not None:
        plot(report, Path(plot_path))
        report = replace(report, plot=str(plot_path))
    return report
