"""Joint multi-task training on the CPU: task losses + lambda x bits per sample."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.data import Dataset, TaskInfo
from models.metrics import METRICS, score
from models.model import ModelConfig, MultiTaskModel, TaskHead

__all__ = ["TrainConfig", "TrainResult", "evaluate", "heads_for", "metric_for", "to_tensor", "train"]

log = logging.getLogger(__name__)

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6  # passes over the training split
    batch_size: int = 64
    lr: float = 1e-3  # peak AdamW learning rate, cosine-decayed after a short warmup
    weight_decay: float = 0.05
    rate_lambda: float = 5e-4  # loss weight per bit of the quantized representation
    seed: int = 0
    tasks: tuple[str, ...] | None = None  # None: every task not held out


@dataclass
class TrainResult:
    model: MultiTaskModel
    heads: list[TaskHead]
    targets: dict[str, tuple[float, float]]  # regression task -> (mean, std) used to standardize
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def heads_for(tasks: list[TaskInfo]) -> list[TaskHead]:
    heads = []
    for task in tasks:
        out = len(task.classes) if task.classes else 1
        heads.append(TaskHead(task.name, task.kind, out))
    return heads


def metric_for(kind: str) -> tuple[str, bool]:
    """(metric name, higher is better) for a task kind."""
    return METRICS[kind]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B,H,W,3) uint8 -> (B,3,H,W) float32, normalized as the manifest records."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def task_loss(head: TaskHead, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if head.kind == "regression":
        return F.smooth_l1_loss(out, target)
    return F.cross_entropy(out, target)


@torch.no_grad()
def evaluate(result: TrainResult, data: Dataset, quantize: bool = True) -> dict[str, float]:
    """Metric per trained task, torch float32 (quantized bottleneck unless told otherwise)."""
    result.model.eval()
    outs: dict[str, list[np.ndarray]] = {h.name: [] for h in result.heads}
    for start in range(0, len(data), 256):
        x = to_tensor(data.images[start : start + 256])
        pred, _ = result.model(x, quantize=quantize)
        for name, value in pred.items():
            mean, std = result.targets.get(name, (0.0, 1.0))
            outs[name].append(value.numpy() * std + mean)
    return {h.name: score(h.kind, np.concatenate(outs[h.name]), data.labels[h.name]) for h in result.heads}


def train(cfg: ModelConfig, tcfg: TrainConfig, data: Dataset, progress: bool = True) -> TrainResult:
    """Train encoder, compressor and all decoders jointly; seeded and CPU-only."""
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    chosen = [t for t in data.tasks if (t.name in tcfg.tasks if tcfg.tasks else t.name not in data.held_out)]
    heads = heads_for(chosen)
    model = MultiTaskModel(cfg, heads)
    targets = {
        h.name: (float(data.labels[h.name].mean()), float(data.labels[h.name].std() + 1e-6))
        for h in heads
        if h.kind == "regression"
    }
    labels = {
        h.name: torch.from_numpy(
            (data.labels[h.name] - targets[h.name][0]) / targets[h.name][1]
            if h.name in targets
            else data.labels[h.name]
        )
        for h in heads
    }
    weights = {t.name: t.weight for t in chosen}
    images = to_tensor(data.images)
    steps_per_epoch = len(data) // tcfg.batch_size
    total = steps_per_epoch * tcfg.epochs
    warmup = max(1, total // 20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    result = TrainResult(model, heads, targets, 0.0)
    started = time.perf_counter()
    bar = tqdm(total=total, desc="train", disable=not progress, unit="step", leave=False)
    model.train()
    for epoch in range(tcfg.epochs):
        order = torch.from_numpy(rng.permutation(len(data)))
        for step in range(steps_per_epoch):
            idx = order[step * tcfg.batch_size : (step + 1) * tcfg.batch_size]
            outputs, rate = model(images[idx])
            losses = {h.name: weights[h.name] * task_loss(h, outputs[h.name], labels[h.name][idx]) for h in heads}
            loss = sum(losses.values()) + tcfg.rate_lambda * rate.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", bits=f"{rate.mean().item():.0f}")
        result.history.append({"epoch": epoch, "loss": float(loss.item()), "bits": float(rate.mean().item())})
        log.info("epoch %d loss %.3f bits/sample %.0f", epoch, loss.item(), rate.mean().item())
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
