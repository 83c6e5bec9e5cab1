"""Joint multi-task training on the CPU: task losses + lambda x bits per sample."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from models.dataset import Dataset, TaskInfo
from models.metrics import METRICS, score
from models.model import PREVIEW, ModelConfig, MultiTaskModel, TaskHead, thumbnail
from models.progress import Progress
from models.progress import progress as progress_bar
from shared.errors import ConfigError

__all__ = [
    "TrainConfig",
    "TrainResult",
    "distortion",
    "distortion_weight",
    "evaluate",
    "heads_for",
    "metric_for",
    "to_tensor",
    "train",
    "warmup_cosine",
]

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
    distortion: float = 0.0  # weight of the preview's mean squared error (needs ModelConfig.preview):
    # the task-agnostic part of the objective, so the representation keeps what no task names
    distortion_warmup: float = 0.0  # fraction of the steps over which that weight grows from 0 to
    # its full value: the tasks shape the representation first, the thumbnail fills what is left

    @property
    def objective(self) -> str:
        """What the device half was trained for, as the bundle records it."""
        return "tasks+rate+distortion" if self.distortion else "tasks+rate"


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


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of training and tuning alike: linear warmup over the first
    5% of ``total`` steps, then cosine decay to zero at ``total``; step it once per batch."""
    warmup = max(1, total // 20)
    total = max(1, total)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _chosen_tasks(data: Dataset, names: tuple[str, ...] | None) -> list[TaskInfo]:
    """The tasks to train: ``names`` in the data set's order, or (none named) every task not held out."""
    if not names:
        chosen = [t for t in data.tasks if t.name not in data.held_out]
        if not chosen:
            raise ConfigError(f"every task of data set {data.name!r} is held out ({data.held_out}); "
                              "name the tasks to train")
        return chosen
    known = [t.name for t in data.tasks]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"task(s) {unknown} are not in data set {data.name!r}; pick from {known}")
    return [t for t in data.tasks if t.name in names]


def task_loss(head: TaskHead, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if head.kind == "regression":
        return F.smooth_l1_loss(out, target)
    return F.cross_entropy(out, target)


@torch.no_grad()
def distortion_weight(tcfg: TrainConfig, step: int, total: int) -> float:
    """The thumbnail error's weight at ``step`` of ``total``: growing linearly from 0 over the
    first ``distortion_warmup`` of the steps, then ``distortion``."""
    ramp = tcfg.distortion_warmup * total
    return tcfg.distortion * (min(1.0, step / ramp) if ramp > 0 else 1.0)


def distortion(result: TrainResult, data: Dataset) -> float:
    """Mean squared error of the preview against the input thumbnail (normalized units)."""
    model, side = result.model, result.model.cfg.preview
    model.eval()
    errors = []
    for start in range(0, len(data), 256):
        x = to_tensor(data.images[start : start + 256])
        outputs, _ = model(x)
        errors.append(F.mse_loss(outputs[PREVIEW], thumbnail(x, side), reduction="sum").item())
    return float(sum(errors) / (len(data) * 3 * side * side))


@torch.no_grad()
def evaluate(result: TrainResult, data: Dataset, quantize: bool = True) -> dict[str, float]:
    """Metric per trained task, torch float32 (quantized bottleneck unless told otherwise)."""
    result.model.eval()
    outs: dict[str, list[np.ndarray]] = {h.name: [] for h in result.heads}
    for start in range(0, len(data), 256):
        x = to_tensor(data.images[start : start + 256])
        pred, _ = result.model(x, quantize=quantize)
        for name, value in pred.items():
            if name not in outs:  # the preview: scored by distortion(), not as a task
                continue
            mean, std = result.targets.get(name, (0.0, 1.0))
            outs[name].append(value.numpy() * std + mean)
    return {h.name: score(h.kind, np.concatenate(outs[h.name]), data.labels[h.name]) for h in result.heads}


def train(cfg: ModelConfig, tcfg: TrainConfig, data: Dataset, progress: bool = True) -> TrainResult:
    """Train encoder, compressor and all decoders jointly; seeded and CPU-only.

    ``progress``: a bar on stderr when it is a terminal (see :mod:`models.progress`);
    False never draws one."""
    if not len(data):
        raise ConfigError(f"data set {data.name!r} has no training samples; pass a count above 0")
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    chosen = _chosen_tasks(data, tcfg.tasks)
    heads = heads_for(chosen)
    if tcfg.distortion and not cfg.preview:
        raise ConfigError("a distortion weight needs a preview decoder: set ModelConfig.preview (e.g. 16)")
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
    batch = min(tcfg.batch_size, len(data))  # a small folder trains in one batch, as tuning does
    steps_per_epoch = len(data) // batch
    total = steps_per_epoch * tcfg.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    schedule = warmup_cosine(optimizer, total)
    result = TrainResult(model, heads, targets, 0.0)
    started = time.perf_counter()
    bar: Progress[int] = progress_bar(total=total, desc="train", unit="step", enabled=progress)
    model.train()
    for epoch in range(tcfg.epochs):
        order = torch.from_numpy(rng.permutation(len(data)))
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            x = images[idx]
            outputs, rate = model(x)
            losses = {
                h.name: weights[h.name] * task_loss(h, outputs[h.name], labels[h.name][idx]) for h in heads
            }
            loss = sum(losses.values()) + tcfg.rate_lambda * rate.mean()
            if tcfg.distortion:
                weight = distortion_weight(tcfg, epoch * steps_per_epoch + step, total)
                loss = loss + weight * F.mse_loss(outputs[PREVIEW], thumbnail(x, cfg.preview))
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
