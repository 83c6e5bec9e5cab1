"""`devtune bench transfer` on the tiny bundle: every suite task gets its four numbers, the targets are judged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtune.bench.transfer import TaskResult, gap, pixel_probe
from devtune.cli import main
from models.data import make_shapes
from models.metrics import chance


@pytest.fixture(scope="module")
def report(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("transfer") / "bench-transfer.json"
    code = main(["bench", "transfer", "--bundle", str(tiny_bundle), "--baseline", str(tiny_bundle), "--quick",
                 "--count", "256", "--test-count", "96", "--tune-epochs", "2", "--jobs", "2", "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text()), out


def test_every_held_out_task_is_measured(report: Any) -> None:
    document, out = report
    suite = make_shapes("val", count=1).held_out
    assert list(document["tasks"]) == suite
    for task, row in document["tasks"].items():
        for key in ("tuned", "pixels", "joint", "chance", "baseline_tuned"):
            assert isinstance(row[key], float), (task, key)
        assert row["metric"] in ("accuracy", "mae", "miou")
    assert out.with_suffix(".png").stat().st_size > 10_000  # the plot, one panel a task


def test_bundle_facts_and_targets(report: Any) -> None:
    document, _ = report
    facts = document["bundle"]
    assert set(facts["trained"]) == {"shape", "color", "texture", "size", "mask"}
    assert 0 < facts["bytes_per_sample"] < 64 * 8  # coded: fewer than one byte a symbol
    assert set(document["targets"]) == {"beats_pixels", "near_joint", "trained_kept", "bytes"}
    # the baseline is the same bundle: nothing lost, the same bytes
    assert document["targets"]["trained_kept"]["holds"] and document["targets"]["bytes"]["ratio"] == 1.0


def test_the_numbers_do_not_depend_on_how_many_jobs_ran_them(report: Any, tiny_bundle: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "one-job.json"
    code = main(["bench", "transfer", "--bundle", str(tiny_bundle), "--quick", "--count", "256", "--test-count", "96",
                 "--tune-epochs", "2", "--tasks", "quadrant,brightness", "--joint-epochs", "0", "--jobs", "1",
                 "--no-plot", "--out", str(out)])
    assert code == 0
    inline, pooled = json.loads(out.read_text())["tasks"], report[0]["tasks"]
    for task in ("quadrant", "brightness"):
        assert inline[task]["tuned"] == pooled[task]["tuned"]  # same seed, one thread: the same decoder
        assert inline[task]["joint"] is None


def test_pixel_probe_sees_what_pixels_show_and_chance_is_a_constant() -> None:
    train, test = make_shapes("train", count=600), make_shapes("test", count=200)
    info = {t.name: t for t in train.tasks}
    light = test.labels["bg_light"]
    assert pixel_probe(info["bg_light"], train, test) < 0.8 * chance("regression", light)  # type: ignore[operator]
    assert chance("classification", np.array([0, 0, 1, 2])) == 0.5
    shade = pixel_probe(info["shade"], train, test)
    assert chance("dense", test.labels["shade"]) < shade <= 1.0  # type: ignore[operator]


def test_gap_is_in_target_units() -> None:
    accuracy = TaskResult("t", "classification", "accuracy", True, 0.90, 0.5, 0.92, 0.25, None)
    error = TaskResult("t", "regression", "mae", False, 1.05, 2.0, 1.00, 3.0, None)
    assert gap(accuracy) == pytest.approx(1.0)  # 2 points short
    assert gap(error) == pytest.approx(1.0)  # 5% relative worse
