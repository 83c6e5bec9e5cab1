"""`devtune bench rate` on a tiny sweep: the JSON a user reads is complete and sane, the plot is written."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from devtune.bench.rate.baselines import jpeg_augmented
from devtune.bench.rate.cli import sweep_from_args
from devtune.bench.rate.config import FULL, QUICK, RateSweep
from devtune.bench.rate.report import render_table, report_json
from devtune.bench.rate.results import Baseline, CodedSizes, PointResult, RateReport
from devtune.bench.rate.sweep import measure
from devtune.bench.rate.targets import evaluate_targets

TASKS = {"shape", "color", "texture", "size", "mask"}


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> RateReport:
    """Two 1-epoch tiny models plus the reference, 384 train / 96 test samples, two JPEG qualities."""
    import torch

    from models.model import ModelConfig

    torch.manual_seed(0)
    sweep = RateSweep(
        points=((4, 5e-4), (8, 5e-4)),
        model=ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32),
        epochs=1,
        train_samples=384,
        test_samples=96,
        jpeg_qualities=(25, 75),
        jpeg_augment=False,
        histogram_samples=384,
    )
    plot = tmp_path_factory.mktemp("rate") / "bench-rate.png"
    return measure(sweep, plot, progress=lambda message: None)


@pytest.fixture(scope="module")
def document(tiny_report: RateReport, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    written = report_json(tiny_report)
    assert json.loads(json.dumps(written, allow_nan=False)) == written  # plain, finite JSON
    return written


def test_json_has_every_section_and_task(document: dict[str, Any]) -> None:
    assert set(document["reference"]["tasks"]) == TASKS
    assert set(document["metrics"]) == TASKS
    assert document["metrics"]["shape"]["higher_is_better"] is True
    assert document["metrics"]["size"]["higher_is_better"] is False
    assert len(document["points"]) == 2
    for point in document["points"]:
        assert {"bits", "lambda", "bytes_per_sample", "coded_over_ideal", "encode_us", "decode_us"} <= set(point)
        assert set(point["tasks"]) == TASKS
    baselines = document["baselines"]
    for name in ("float32", "uint8", "zstd", "png"):
        assert baselines[name]["bytes_per_sample"] > 0 and set(baselines[name]["tasks"]) == TASKS
    assert [j["quality"] for j in baselines["jpeg"]] == [25, 75]
    targets = document["targets"]
    for name in ("quality", "vs_float32", "vs_jpeg", "coded_vs_ideal", "coder_speed"):
        assert {"measured", "limit", "pass"} <= set(targets[name])
    assert isinstance(targets["all_pass"], bool)


def test_sizes_and_coder_are_sane(document: dict[str, Any]) -> None:
    baselines = document["baselines"]
    float32, uint8 = baselines["float32"]["bytes_per_sample"], baselines["uint8"]["bytes_per_sample"]
    assert float32 == 64 * 32 * 4  # N tokens x D = 32 x float32
    assert uint8 == 64 * 8  # N x C symbols, one byte each
    for point in document["points"]:
        assert 4 < point["bytes_per_sample"] < uint8 < float32
        assert 1.0 <= point["coded_over_ideal"] < 1.2
        assert point["encode_us"] > 0 and point["decode_us"] > 0
    # JPEG gets smaller with quality, and stays far above a lossless PNG's size
    jpeg = baselines["jpeg"]
    assert jpeg[0]["bytes_per_sample"] < jpeg[1]["bytes_per_sample"] < baselines["png"]["bytes_per_sample"]
    # cloud-only on PNG is the reference model on identical pixels
    assert baselines["png"]["tasks"] == document["reference"]["tasks"]


def test_plot_is_written(tiny_report: RateReport) -> None:
    assert tiny_report.plot is not None
    assert Path(tiny_report.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_mode_prints_one_object_on_stdout(
    tiny_report: RateReport, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through the benchmarks' one JSON writer, as `run` uses it."""
    from devtune.bench.output import emit_report

    def measured() -> RateReport:
        print(render_table(tiny_report), file=sys.stderr)  # what run() prints while measuring
        return tiny_report

    out = tmp_path / "out.json"
    emit_report(argparse.Namespace(json=True, out=str(out)), measured, report_json, lambda _: "")
    captured = capfd.readouterr()
    assert json.loads(captured.out)["points"]  # exactly one JSON document, nothing else
    assert "targets" in captured.err  # the table goes to stderr
    assert json.loads(out.read_text()) == json.loads(captured.out)
    assert "plot:" in render_table(tiny_report)


def _point(bits: int, size: float, shape: float, mae: float) -> PointResult:
    coded = CodedSizes(size, size - 5, size / (size - 5), 4.0, 40.0, 50.0)
    return PointResult(bits, 5e-4, coded, 512, 300, 1.0, {"shape": shape, "size": mae})


def test_targets_judge_the_smallest_point_within_tolerance() -> None:
    kinds = {"shape": "classification", "size": "regression"}
    reference = {"shape": 0.90, "size": 1.00}
    points = [
        _point(8, 200.0, 0.905, 1.00),
        _point(4, 100.0, 0.89, 1.05),  # exactly 1 point and 5 % behind: still within, the one judged
        _point(2, 40.0, 0.85, 1.02),  # too inaccurate
    ]
    jpeg = [Baseline(500.0, {"shape": 0.80, "size": 1.3}, 10), Baseline(900.0, {"shape": 0.9, "size": 1.0}, 50)]
    png = Baseline(9000.0, reference)
    targets = evaluate_targets(points, reference, kinds, 24576.0, png, jpeg)
    assert (targets.bits, targets.bytes_per_sample, targets.within_tolerance) == (4, 100.0, True)
    assert targets.checks["vs_float32"].passed and targets.checks["vs_float32"].measured == 245.8
    assert targets.checks["vs_jpeg"].measured == 9.0  # against q50, the smallest JPEG with its metrics
    assert targets.all_pass


def test_targets_fall_back_to_the_closest_point_and_jpeg() -> None:
    kinds = {"shape": "classification", "size": "regression"}
    reference = {"shape": 0.90, "size": 1.00}
    points = [_point(4, 100.0, 0.87, 1.0), _point(2, 40.0, 0.80, 1.0)]
    png = Baseline(9000.0, reference)
    jpeg = [Baseline(500.0, {"shape": 0.5, "size": 2.0}, 10), Baseline(900.0, {"shape": 0.85, "size": 1.0}, 50)]
    targets = evaluate_targets(points, reference, kinds, 24576.0, png, jpeg)
    assert (targets.bits, targets.within_tolerance) == (4, False)
    assert not targets.checks["quality"].passed and "shape" in targets.checks["quality"].note
    # no JPEG matches the point: the closest one (q50) stands in, and the note says so
    assert targets.checks["vs_jpeg"].measured == 9.0 and "closest, quality 50" in targets.checks["vs_jpeg"].note
    assert not targets.all_pass
    assert evaluate_targets(points, reference, kinds, 24576.0, png, []).checks["vs_jpeg"].measured == 90.0


def test_jpeg_augmentation_degrades_half_the_training_images() -> None:
    from models.data import make_shapes

    data = make_shapes("train", count=40)
    augmented = jpeg_augmented(data, (10, 50), seed=0)
    changed = (augmented.images != data.images).any(axis=(1, 2, 3))
    assert changed.sum() == 20  # q10 and q50 always move some pixel of a noisy image
    assert augmented.labels is data.labels and augmented.images.dtype == data.images.dtype


def test_command_line_presets_and_overrides() -> None:
    from devtune.cli import build_parser

    args = build_parser().parse_args(["bench", "rate", "--quick", "--json", "--points", "4:1e-3,2:0"])
    assert args.out == "results/bench-rate.json"
    sweep = sweep_from_args(args)
    assert sweep.points == ((4, 1e-3), (2, 0.0))
    assert sweep.epochs == QUICK.epochs and sweep.train_samples == QUICK.train_samples
    assert sweep_from_args(build_parser().parse_args(["bench", "rate"])) == FULL
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "rate", "--points", "3:1e-3"])


def test_bad_command_line_values_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from devtune.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "rate", "--qualities", "0,50"])
    assert "1..95" in capsys.readouterr().err
