"""Measure a split pre-trained encoder on ``sentences``: rate, accuracy vs unsplit, latency, vs scratch.

    OMP_NUM_THREADS=1 python -m models.pretrained.measure --splits 2 4 > measure.json

Per split point: ideal bits per sample under the learned prior and the empirical entropy of the
test symbols, float32 bytes at the split, each task's test metric against the unsplit,
uncompressed model with the same heads, device-half latency at batch 1 in ONNX Runtime and
torch eager; once: the same architecture from scratch, trained for the pre-trained path's time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from models.pretrained.encoder import load_encoder
from models.pretrained.fit import (
    DistillConfig,
    HeadConfig,
    chosen_tasks,
    distill,
    evaluate,
    fit_heads,
    teacher_features,
    train_scratch,
)
from models.pretrained.onnx import export_split
from models.pretrained.split import SplitConfig, SplitModel
from models.textdata import make_sentences
from models.train import heads_for

__all__ = ["main"]


def _latency(fn, runs: int = 30) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


@torch.no_grad()
def _device_latency(model: SplitModel, graph: bytes, tokenize, text: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median ms of the device half on one text: torch eager vs ONNX Runtime, one thread each."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    ids, mask = tokenize([text])
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask).float()
    eager = _latency(lambda: model.device_half(t_ids, t_mask))
    onnx = _latency(lambda: session.run(None, {"input_ids": ids, "attention_mask": mask}))
    return {"torch_eager": round(eager, 2), "onnxruntime": round(onnx, 2), "tokens": int(mask.sum())}


@torch.no_grad()
def _rate(model: SplitModel, tokenize, texts: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    cfg, levels = model.cfg, model.compressor.levels
    bits, tokens, counts = [], [], np.zeros((cfg.bottleneck, levels))
    for i in range(0, len(texts), 128):
        ids, mask = (torch.from_numpy(a) for a in tokenize(texts[i:i + 128]))
        z = model.compressor.quantize(model.device_half(ids, mask.float()))
        bits.append(model.rate_bits(z, mask.float()))
        tokens.append(mask.sum(1))
        symbols = torch.round(z * (levels - 1)).long()[mask.bool()]  # (real tokens, C)
        for c in range(cfg.bottleneck):
            counts[c] += np.bincount(symbols[:, c].numpy(), minlength=levels)
    n_tokens = float(torch.cat(tokens).float().mean())
    probs = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        empirical = float(-np.nansum(probs * np.log2(probs))) * n_tokens
    prior = float(torch.cat(bits).mean())
    return {"tokens_per_sample": round(n_tokens, 2), "prior_bits_per_sample": round(prior, 1),
            "prior_bytes_per_sample": round(prior / 8, 1), "empirical_entropy_bytes_per_sample": round(empirical / 8, 1),
            "float32_bytes_at_split": round(n_tokens * model.dim * 4, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--splits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--bottleneck", type=int, default=16)
    parser.add_argument("--distill-texts", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    encoder = load_encoder(args.encoder, max_tokens=32)
    train, test = make_sentences("train", args.train), make_sentences("test", args.test)
    val = make_sentences("val", args.test)
    heads = heads_for(chosen_tasks(train))
    report: dict[str, object] = {"encoder": args.encoder, "train": len(train), "test": len(test)}

    started = time.perf_counter()
    unsplit = SplitModel(encoder, SplitConfig(split=1, bottleneck=args.bottleneck), heads)
    base = fit_heads(unsplit, encoder.tokenize, train, HeadConfig(), teacher_features(unsplit))
    report["unsplit"] = {"test": evaluate(base, encoder.tokenize, test, teacher_features(unsplit)),
                         "val": evaluate(base, encoder.tokenize, val, teacher_features(unsplit)),
                         "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report["unsplit"]), file=sys.stderr)
    pretrained_seconds = 0.0
    for split in args.splits:
        started = time.perf_counter()
        model = SplitModel(encoder, SplitConfig(split=split, bottleneck=args.bottleneck), heads)
        history = distill(model, encoder.tokenize, train.texts[: args.distill_texts], DistillConfig(steps=args.steps))
        result = fit_heads(model, encoder.tokenize, train, HeadConfig())
        seconds = time.perf_counter() - started
        pretrained_seconds = pretrained_seconds or seconds
        graphs = export_split(result)
        latency = _device_latency(model, graphs.device, encoder.tokenize, test.texts[0])
        entry = {"split": split, "train_seconds": round(seconds, 1),
                 "distill_loss_first_last": [round(history[0]["loss"], 4), round(history[-1]["loss"], 4)],
                 **_rate(model, encoder.tokenize, test.texts),
                 "test": evaluate(result, encoder.tokenize, test), "val": evaluate(result, encoder.tokenize, val),
                 "device_ms_batch1": latency,
                 "device_onnx_bytes": len(graphs.device)}
        report[f"split_{split}"] = entry
        print(json.dumps(entry), file=sys.stderr)
    scratch = train_scratch(encoder, SplitConfig(split=args.splits[0], bottleneck=args.bottleneck), train,
                            seconds=pretrained_seconds)
    report["scratch"] = {"seconds": round(scratch.seconds, 1), "steps": len(scratch.history),
                         "test": evaluate(scratch, encoder.tokenize, test),
                         "val": evaluate(scratch, encoder.tokenize, val)}
    print(json.dumps(report["scratch"]), file=sys.stderr)
    json.dump(report, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
