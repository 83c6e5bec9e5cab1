"""`devtune bench split`: runs end to end on a small user module, and judges the targets as stated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtune.bench.split import judge
from devtune.cli import main


def report(**split: Any) -> dict[str, Any]:
    entry = {"test": {"topic": 0.90, "count": 1.00}, "coded_bytes_per_text": 100.0,
             "float32_bytes_at_split": 6000.0, "device_ms_batch1": {"torch_eager_ms": 10.0, "onnxruntime_ms": 4.0},
             "held_out": {"test": 0.81}}
    entry.update(split)
    return {"config": {"splits": [2]}, "unsplit": {"test": {"topic": 0.905, "count": 0.96}, "held_out_test": 0.82},
            "split_2": entry, "scratch": {"test": {"topic": 0.5, "count": 2.0}}}


def test_targets_pass_when_met() -> None:
    verdict = judge(report())
    assert verdict["split_2"]["near_unsplit"] and verdict["split_2"]["small_bytes"]
    assert verdict["split_2"]["onnx_2x"] and verdict["split_2"]["held_out_2pt"] and verdict["beats_scratch"]
    assert verdict["scratch_margins"] == {"topic": 0.4, "count": 1.0}


@pytest.mark.parametrize(("change", "target"), [
    ({"test": {"topic": 0.89, "count": 1.00}}, "near_unsplit"),  # 1.5 points below the unsplit model
    ({"test": {"topic": 0.90, "count": 1.02}}, "near_unsplit"),  # MAE 6% above
    ({"coded_bytes_per_text": 121.0}, "small_bytes"),  # under 50x smaller than float32
    ({"device_ms_batch1": {"torch_eager_ms": 7.0, "onnxruntime_ms": 4.0}}, "onnx_2x"),
    ({"held_out": {"test": 0.79}}, "held_out_2pt"),
])
def test_each_target_fails_when_missed(change: dict[str, Any], target: str) -> None:
    assert not judge(report(**change))["split_2"][target]


def test_bench_split_runs_and_prints_one_json_object(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "split.json"
    assert main(["bench", "split", "--json", "--encoder", "tests.test_byom:user_model", "--splits", "1",
                 "--steps", "5", "--train", "128", "--test", "64", "--out", str(out)]) == 0
    document = json.loads(capfd.readouterr().out)
    assert json.loads(out.read_text()) == document
    entry = document["split_1"]
    assert set(entry["test"]) == {"sentiment", "topic", "count", "negated"}
    assert entry["coded_bytes_per_text"] > 0 and entry["held_out"]["test"] >= 0
    assert document["utf8_bytes_per_text"] > 0 and "beats_scratch" in document["targets"]
