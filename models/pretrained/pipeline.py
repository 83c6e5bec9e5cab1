"""`devtune train --encoder SPEC --split N`: load, split, distill, fit heads, export a text bundle.

    load_encoder(SPEC) -> SplitModel(split N) -> distill (no labels) -> fit_heads -> export_text_bundle

A preset names a tested setting; ``minilm`` is the built-in text default: all-MiniLM-L6-v2
split after block 2, on the generated ``sentences`` tasks (``tense`` held out for tuning).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from models.pretrained.bundle import export_text_bundle
from models.pretrained.encoder import load_encoder
from models.pretrained.fit import DistillConfig, HeadConfig, chosen_tasks, distill, fit_heads
from models.pretrained.split import SplitConfig, SplitModel
from models.textdata import load_text
from models.train import heads_for
from shared.errors import ConfigError
from shared.manifest import DEFAULT_CODEC, Manifest, check_name

__all__ = ["PRESETS", "TextTrainConfig", "preset", "train_text_bundle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextTrainConfig:
    encoder: str  # minilm, a local Hugging Face directory, or package.module:factory
    split: int = 2  # blocks on the device
    data: str = "sentences"  # the built-in text set or a text folder (labels.csv with a text column)
    freeze: bool = True  # keep the encoder's weights fixed; only the bottleneck and heads learn
    steps: int = 900  # distillation steps (MiniLM split 2: loss 0.375 after 300, 0.128 after 900)
    epochs: int = 30  # head epochs over the trunk's features
    bits: int = 8
    bottleneck: int = 16  # channels per token on the wire
    head_dim: int = 128  # hidden width of every task head
    rate_lambda: float = 2e-5
    generic: float = 0.0  # generic texts (random vocabulary words) per training text in distillation
    max_tokens: int = 32  # texts are truncated to this many tokens
    train_texts: int | None = None  # use only the first this many training texts (None: all)
    codec: str = DEFAULT_CODEC
    seed: int = 0
    name: str = "text"


PRESETS: dict[str, TextTrainConfig] = {
    "minilm": TextTrainConfig(encoder="minilm", split=2, name="minilm"),
}


def preset(which: str, **overrides: object) -> TextTrainConfig:
    """Preset ``which`` with the options a user gave on top (None: keep the preset's)."""
    if which not in PRESETS:
        raise ConfigError(f"unknown preset {which!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[which], **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def train_text_bundle(out: str | Path, cfg: TextTrainConfig) -> Manifest:
    """Train a split text model as ``cfg`` says and write its bundle to ``out``."""
    check_name(cfg.name)  # now, not after the distillation
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    encoder = load_encoder(cfg.encoder, max_tokens=cfg.max_tokens)
    train = load_text(cfg.data, "train", cfg.train_texts, seed=cfg.seed)
    tasks = chosen_tasks(train)
    if any(task.name == "trunk" for task in tasks):
        raise ConfigError("a task may not be called 'trunk': cloud/trunk.onnx is the shared trunk; rename it")
    split_cfg = SplitConfig(split=cfg.split, bottleneck=cfg.bottleneck, bits=cfg.bits,
                            head_dim=cfg.head_dim)  # type: ignore[arg-type]
    model = SplitModel(encoder, split_cfg, heads_for(tasks))
    log.info("distilling the split of %s at block %d (%d steps, %d texts)", cfg.encoder, cfg.split, cfg.steps,
             len(train))
    history = distill(model, encoder.tokenize, train.texts,
                      DistillConfig(steps=cfg.steps, rate_lambda=cfg.rate_lambda, freeze=cfg.freeze,
                                    generic=cfg.generic, seed=cfg.seed))
    log.info("fitting %d heads on the trunk", len(tasks))
    result = fit_heads(model, encoder.tokenize, train, HeadConfig(epochs=cfg.epochs, seed=cfg.seed))
    facts: dict[str, float | int | str] = {
        "freeze": int(cfg.freeze), "distill_steps": cfg.steps, "seed": cfg.seed,
        "distill_loss_last": round(history[-1]["loss"], 4) if history else 0.0,
        "train_seconds": round(time.perf_counter() - started, 1),  # distillation and heads, not the export
    }
    return export_text_bundle(result, encoder, train, out, name=cfg.name, codec=cfg.codec, training=facts)
