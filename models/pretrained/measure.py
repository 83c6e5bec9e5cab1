"""Measure a split pre-trained encoder on ``sentences``: rate, accuracy vs unsplit, latency, tuning, scratch.

    OMP_NUM_THREADS=1 python -m models.pretrained.measure --splits 2 4 > measure.json
    (devtune bench split [--json] runs the same and judges the targets)

Once: the unsplit, uncompressed model with the same head architecture fitted on its pooled
output (the reference every split is held to), its latency on the device (ONNX Runtime, batch
1), and the same architecture trained from scratch for the first split's training time.

Per split point: each task's test metric; bytes per text as the bundle's codec writes them,
against float32 features at the split and the UTF-8 text itself; the device half's latency
in ONNX Runtime and torch eager at batch 1; the held-out task tuned on the frozen split
(``devtune tune`` on the exported bundle) against a head on the unsplit model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from models.metrics import score
from models.pretrained.bundle import export_text_bundle
from models.pretrained.encoder import LoadedEncoder, load_encoder
from models.pretrained.fit import (
    DistillConfig,
    FitResult,
    HeadConfig,
    chosen_tasks,
    distill,
    evaluate,
    fit_heads,
    teacher_features,
    train_scratch,
)
from models.pretrained.onnx import _onnx_bytes, export_split
from models.pretrained.split import SplitConfig, SplitModel
from models.textdata import TextDataset, make_sentences
from models.train import heads_for
from models.tune import TuneConfig

__all__ = ["MeasureConfig", "main", "measure"]


@dataclass(frozen=True)
class MeasureConfig:
    encoder: str = "minilm"
    splits: tuple[int, ...] = (2, 4)
    bottleneck: int = 16
    steps: int = 900  # distillation steps per split
    train: int = 1500  # training texts (heads, tuning); distillation uses them too
    test: int = 500  # test texts (held-out wording) and val texts
    max_tokens: int = 32
    tune_epochs: int = 30


def _latency(fn: Callable[[], object], runs: int = 30) -> float:
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def _session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class _Whole(nn.Module):
    """The unsplit model as a device would run it whole: token ids -> pooled features (B, D)."""

    def __init__(self, model: SplitModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return teacher_features(self.model)(input_ids, attention_mask.float())


@torch.no_grad()
def _device_latency(model: SplitModel, graph: bytes, encoder: LoadedEncoder, text: str) -> dict[str, float]:
    """Median ms of the device half on one text: torch eager vs ONNX Runtime, one thread each."""
    session = _session(graph)
    ids, mask = encoder.tokenize([text])
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask).float()
    eager = _latency(lambda: model.device_half(t_ids, t_mask))
    onnx = _latency(lambda: session.run(None, {"input_ids": ids, "attention_mask": mask}))
    return {"torch_eager_ms": round(eager, 2), "onnxruntime_ms": round(onnx, 2), "tokens": int(mask.sum())}


@torch.no_grad()
def _whole_latency(model: SplitModel, encoder: LoadedEncoder, text: str) -> dict[str, float]:
    seq = {0: "batch", 1: "tokens"}
    ids, mask = encoder.tokenize([text])
    graph = _onnx_bytes(_Whole(model), (torch.from_numpy(ids), torch.from_numpy(mask)),
                        {"input_ids": seq, "attention_mask": seq}, "whole model")
    session = _session(graph)
    whole = _Whole(model).eval()
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    return {"onnxruntime_ms": round(_latency(lambda: session.run(None, {"input_ids": ids, "attention_mask": mask})), 2),
            "torch_eager_ms": round(_latency(lambda: whole(t_ids, t_mask)), 2)}


def _tuned(bundle: Path, task: str, train: TextDataset, test: TextDataset, epochs: int) -> dict[str, float]:
    """The held-out task tuned on the frozen bundle as `devtune tune` does, scored on test."""
    from models.pretrained.tune import text_features, tune_text_bundle

    started = time.perf_counter()
    tuned = bundle.parent / f"{bundle.name}-tuned"
    result = tune_text_bundle(bundle, tuned, task, config=TuneConfig(epochs=epochs, count=len(train)))
    head = _session((tuned / result.manifest.task(task).file).read_bytes())
    outputs = head.run(None, {"features": text_features(tuned, test.texts)})[0]
    return {"test": round(score(result.manifest.task(task).kind, np.asarray(outputs), test.labels[task]), 4),
            "val": round(result.val_metric, 4), "seconds": round(time.perf_counter() - started, 1)}


def measure(cfg: MeasureConfig, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Everything the module docstring lists, as one JSON-ready dict."""
    torch.set_num_threads(1)
    encoder = load_encoder(cfg.encoder, max_tokens=cfg.max_tokens)
    train, test = make_sentences("train", cfg.train), make_sentences("test", cfg.test)
    held_out = train.held_out[0]
    heads = heads_for(chosen_tasks(train))
    utf8 = float(np.mean([len(t.encode()) for t in test.texts]))
    report: dict[str, Any] = {"encoder": cfg.encoder, "depth": encoder.depth, "dim": encoder.dim,
                              "train": len(train), "test": len(test), "held_out": held_out,
                              "utf8_bytes_per_text": round(utf8, 1), "config": cfg.__dict__}

    started = time.perf_counter()
    unsplit = SplitModel(encoder, SplitConfig(split=1, bottleneck=cfg.bottleneck), heads_for(train.tasks))
    base = fit_heads(unsplit, encoder.tokenize, train, HeadConfig(), teacher_features(unsplit))
    scores = evaluate(base, encoder.tokenize, test, teacher_features(unsplit))
    report["unsplit"] = {"test": {k: round(v, 4) for k, v in scores.items() if k != held_out},
                         "held_out_test": round(scores[held_out], 4),
                         "seconds": round(time.perf_counter() - started, 1),
                         "device_ms_batch1": _whole_latency(unsplit, encoder, test.texts[0])}
    log(json.dumps({"unsplit": report["unsplit"]}))
    pretrained_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="measure-split-") as scratch_dir:
        for split in cfg.splits:
            started = time.perf_counter()
            model = SplitModel(encoder, SplitConfig(split=split, bottleneck=cfg.bottleneck), heads)
            history = distill(model, encoder.tokenize, train.texts, DistillConfig(steps=cfg.steps))
            result: FitResult = fit_heads(model, encoder.tokenize, train, HeadConfig())
            seconds = time.perf_counter() - started
            pretrained_seconds = pretrained_seconds or seconds
            bundle = Path(scratch_dir) / f"split{split}"
            manifest = export_text_bundle(result, encoder, train, bundle)
            facts = manifest.training
            entry = {"split": split, "train_seconds": round(seconds, 1),
                     "distill_loss_first_last": [round(history[0]["loss"], 4), round(history[-1]["loss"], 4)],
                     "test": {k: round(v, 4) for k, v in evaluate(result, encoder.tokenize, test).items()},
                     "coded_bytes_per_text": facts["coded_bytes_per_sample"],
                     "float32_bytes_at_split": facts["float32_bytes_at_split"],
                     "tokens_per_text": facts["tokens_per_text"],
                     "device_ms_batch1": _device_latency(model, export_split(result).device, encoder,
                                                         test.texts[0]),
                     "held_out": _tuned(bundle, held_out, train, test, cfg.tune_epochs)}
            report[f"split_{split}"] = entry
            log(json.dumps(entry))
    scratch = train_scratch(encoder, SplitConfig(split=cfg.splits[0], bottleneck=cfg.bottleneck), train,
                            seconds=pretrained_seconds)
    report["scratch"] = {"seconds": round(scratch.seconds, 1), "steps": len(scratch.history),
                         "test": {k: round(v, 4) for k, v in evaluate(scratch, encoder.tokenize, test).items()}}
    log(json.dumps({"scratch": report["scratch"]}))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--splits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args(argv)
    cfg = MeasureConfig(encoder=args.encoder, splits=tuple(args.splits), steps=args.steps, train=args.train,
                        test=args.test)
    json.dump(measure(cfg, lambda line: print(line, file=sys.stderr)), sys.stdout, indent=1)


if __name__ == "__main__":
    main()
