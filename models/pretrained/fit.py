"""Training a split pre-trained model: distill the bottleneck, then fit heads on the trunk.

1. :func:`distill` trains compressor, prior and expander, with the pre-trained blocks frozen
   (``freeze``), so that the trunk's hidden states after the split match the unsplit model's:
   masked MSE on the last hidden states + MSE on the pooled embedding + lambda x bits. No labels.
2. :func:`fit_heads` trains one head per task on the frozen trunk's pooled features, with the
   task losses of image training (:func:`models.train.task_loss`).

:func:`train_scratch` is the baseline: the same architecture at random init, everything trained
end-to-end on the task losses + rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from models.dataset import TaskInfo
from models.metrics import score
from models.model import TaskHead
from models.pretrained.encoder import LoadedEncoder, Tokenizer
from models.pretrained.split import SplitConfig, SplitModel, masked_mean, run_blocks
from models.textdata import TextDataset
from models.train import heads_for, task_loss, warmup_cosine
from shared.errors import ConfigError

__all__ = [
    "DistillConfig", "FitResult", "HeadConfig", "distill", "evaluate", "fit_heads", "generic_texts", "train_scratch",
]

Features = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, mask) (B,T) -> (B,D)


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 150  # optimizer steps over the unlabeled texts
    batch_size: int = 32
    lr: float = 3e-3  # peak AdamW learning rate, warmup + cosine
    rate_lambda: float = 2e-5  # loss weight per bit; the distortion is relative (1 = as far as predicting the mean)
    freeze: bool = True  # keep the pre-trained weights fixed (the default for a pre-trained model)
    generic: float = 0.0  # also distill on this many generic texts per given text (random words of the
    # tokenizer's vocabulary): the bottleneck then keeps words the task's texts never use
    seed: int = 0


@dataclass(frozen=True)
class HeadConfig:
    epochs: int = 30  # passes over the training features (cheap: the trunk runs once)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0


@dataclass
class FitResult:
    model: SplitModel
    targets: dict[str, tuple[float, float]]  # regression task -> (mean, std) used to standardize
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _tensors(tokenize: Tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = tokenize(texts)
    return torch.from_numpy(ids), torch.from_numpy(mask).float()


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (((a - b) ** 2).mean(dim=-1) * mask).sum() / mask.sum()


def _relative(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE of a against b over b's variance around its per-channel mean."""
    mean = (b * mask.unsqueeze(-1)).sum(dim=(0, 1)) / mask.sum()  # (D,)
    return _masked_mse(a, b, mask) / _masked_mse(b, mean.expand_as(b), mask).clamp_min(1e-9)


def generic_texts(tokenize: Tokenizer, count: int, seed: int = 0) -> list[str]:
    """``count`` texts of 4..16 random whole words from the tokenizer's vocabulary (for a byte
    tokenizer: random lowercase words), unlabeled text that is not the task's."""
    rng = np.random.default_rng([seed, 7])
    vocab = getattr(getattr(tokenize, "tokenizer", None), "get_vocab", dict)()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and len(w) >= 3)
    if len(words) < 100:
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = ["".join(rng.choice(letters, int(rng.integers(3, 9)))) for _ in range(2000)]
    return [" ".join(rng.choice(words, int(rng.integers(4, 17)))) for _ in range(count)]


def distill(model: SplitModel, tokenize: Tokenizer, texts: Sequence[str], cfg: DistillConfig) -> list[dict[str, float]]:
    """Train the bottleneck so the trunk reproduces the unsplit model; returns the loss history."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    for p in model.pretrained_parameters():
        p.requires_grad_(not cfg.freeze)
    if cfg.generic > 0:
        texts = [*texts, *generic_texts(tokenize, int(len(texts) * cfg.generic), cfg.seed)]
    ids, mask = _tensors(tokenize, texts)  # (N, T): one padding for all, the texts are short
    cached = None
    if cfg.freeze:  # the device blocks and the teacher never change: run them once
        model.eval()
        with torch.no_grad():
            cached = [(model.device_half.features(ids[i:i + 128], mask[i:i + 128]),
                       model.teacher(ids[i:i + 128], mask[i:i + 128])) for i in range(0, len(ids), 128)]
        split_h, teacher_h = (torch.cat(parts) for parts in zip(*cached))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    schedule = warmup_cosine(optimizer, cfg.steps)
    history = []
    model.train()
    if cfg.freeze:  # frozen blocks stay in eval mode: dropout in the trunk would be noise the teacher lacks
        model.device_half.encoder.eval()
    for step in range(cfg.steps):
        idx = torch.from_numpy(rng.choice(len(ids), min(cfg.batch_size, len(ids)), replace=False))
        m = mask[idx]
        if cached is not None:
            h, target = split_h[idx], teacher_h[idx]
        else:
            with torch.no_grad():
                target = model.teacher(ids[idx], m)
            h = model.device_half.features(ids[idx], m)
        z = model.compressor(h)
        rate = model.rate_bits(z, m)
        expanded = model.trunk.expand(model.compressor.quantize(z))
        hidden = run_blocks(model.trunk.blocks, expanded, m)
        pooled, pooled_target = masked_mean(hidden, m), masked_mean(target, m)
        # each term over its target's spread, so 1.0 means no better than a constant whatever the
        # encoder's scale; the first (rebuild the split features) gives the expander a short gradient path
        loss = (_relative(expanded, h, m) + _relative(hidden, target, m)
                + F.mse_loss(pooled, pooled_target) / pooled_target.var()
                + cfg.rate_lambda * rate.mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append({"step": step, "loss": float(loss.item()), "bits": float(rate.mean().item())})
    model.eval()
    return history


def _targets(heads: list[TaskHead], data: TextDataset) -> dict[str, tuple[float, float]]:
    return {h.name: (float(data.labels[h.name].mean()), float(data.labels[h.name].std() + 1e-6))
            for h in heads if h.kind == "regression"}


def _labels(heads: list[TaskHead], data: TextDataset, targets: dict[str, tuple[float, float]]
            ) -> dict[str, torch.Tensor]:
    return {h.name: torch.from_numpy((data.labels[h.name] - targets[h.name][0]) / targets[h.name][1]
                                     if h.name in targets else data.labels[h.name]) for h in heads}


@torch.no_grad()
def features_of(features: Features, tokenize: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """(N, D) features of every text, in chunks of 128, each padded to its own longest text."""
    return torch.cat([features(*_tensors(tokenize, texts[i:i + 128])) for i in range(0, len(texts), 128)])


def trunk_features(model: SplitModel) -> Features:
    """Split path: device half, quantized bottleneck, trunk, pooled."""
    return lambda ids, mask: model.trunk(model.compressor.quantize(model.device_half(ids, mask)), mask)


def teacher_features(model: SplitModel) -> Features:
    """Unsplit, uncompressed path: every block, pooled."""
    return lambda ids, mask: masked_mean(model.teacher(ids, mask), mask)


def chosen_tasks(data: TextDataset, names: Sequence[str] | None = None) -> list[TaskInfo]:
    tasks = [t for t in data.tasks if (t.name in names if names else t.name not in data.held_out)]
    if not tasks:
        raise ConfigError(f"no task to train in {data.name!r}: known {[t.name for t in data.tasks]}, "
                          f"held out {data.held_out}")
    return tasks


def fit_heads(model: SplitModel, tokenize: Tokenizer, data: TextDataset, cfg: HeadConfig,
              features: Features | None = None) -> FitResult:
    """Train ``model.heads`` on frozen features (default: the split trunk's) of ``data``."""
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    heads = [h.head for h in model.heads.values()]  # type: ignore[misc]
    targets = _targets(heads, data)
    labels = _labels(heads, data, targets)
    model.eval()
    x = features_of(features or trunk_features(model), tokenize, data.texts)  # (N, D)
    params = list(model.heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = max(1, len(x) // cfg.batch_size)
    schedule = warmup_cosine(optimizer, per_epoch * cfg.epochs)
    model.heads.train()
    for _ in range(cfg.epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for step in range(per_epoch):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            loss = sum(task_loss(h, model.heads[h.name](x[idx]), labels[h.name][idx]) for h in heads)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
            schedule.step()
    model.heads.eval()
    return FitResult(model, targets, time.perf_counter() - started)


@torch.no_grad()
def evaluate(result: FitResult, tokenize: Tokenizer, data: TextDataset, features: Features | None = None
             ) -> dict[str, float]:
    """Metric per head (accuracy, or MAE in the task's units) on ``data``."""
    model = result.model
    model.eval()
    x = features_of(features or trunk_features(model), tokenize, data.texts)
    scores = {}
    for name, head in model.heads.items():
        mean, std = result.targets.get(name, (0.0, 1.0))
        scores[name] = score(head.head.kind, head(x).numpy() * std + mean, data.labels[name])  # type: ignore[union-attr]
    return scores


def train_scratch(encoder: LoadedEncoder, cfg: SplitConfig, data: TextDataset, seconds: float,
                  rate_lambda: float = 2e-3, batch_size: int = 32, lr: float = 1e-3, seed: int = 0
                  ) -> FitResult:
    """The baseline: ``encoder``'s architecture at random init, trained end-to-end on the task
    losses + rate for ``seconds`` of wall time (the pre-trained path's budget)."""
    if encoder.fresh is None:
        raise ConfigError(f"encoder {encoder.spec!r} cannot be rebuilt at random init")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scratch = LoadedEncoder(encoder.spec + " (scratch)", encoder.fresh(), encoder.tokenize, encoder.dim)
    heads = heads_for(chosen_tasks(data))
    model = SplitModel(scratch, cfg, heads)
    targets = _targets(heads, data)
    labels = _labels(heads, data, targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    started = time.perf_counter()
    history = []
    model.train()
    while time.perf_counter() - started < seconds:
        idx = rng.choice(len(data), min(batch_size, len(data)), replace=False)
        ids, mask = _tensors(encoder.tokenize, [data.texts[i] for i in idx])
        outputs, _, rate = model(ids, mask)
        t = torch.from_numpy(idx)
        loss = sum(task_loss(h, outputs[h.name], labels[h.name][t]) for h in heads) + rate_lambda * rate.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        history.append({"loss": float(loss.item())})  # type: ignore[union-attr]
    model.eval()
    return FitResult(model, targets, time.perf_counter() - started, history)
