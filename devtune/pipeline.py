"""Train-and-export, the torch side of `devtune train` and `devtune demo`."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from shared.manifest import DEFAULT_CODEC, Manifest

__all__ = ["OBJECTIVES", "train_bundle"]

log = logging.getLogger("devtune")

OBJECTIVES = {
    # name: (preview side, distortion weight, its warm-up). "rd" adds the task-agnostic term: the
    # symbols must also rebuild a 16x16 thumbnail of the input, so they keep colors, light and
    # layout that no trained task asks for (docs/device-tuning.md, `devtune bench transfer`), at
    # full weight from the first step: warmed up over half the steps (--distortion-warmup 0.5)
    # shape gained 2 points and bg_hue lost 17, so the thumbnail comes in from the start.
    "rd": (16, 2.0, 0.0),
    "supervised": (0, 0.0, 0.0),  # the trained tasks and the rate only: smallest, transfers least
}


def train_bundle(
    out: str | Path,
    data: str = "shapes",
    epochs: int | None = None,
    bits: int = 4,
    bottleneck: int = 8,
    rate_lambda: float | None = None,
    encoder: str = "vit",
    codec: str = DEFAULT_CODEC,
    seed: int = 0,
    name: str = "default",
    fallback: str = "",
    objective: str = "rd",
    distortion: float | None = None,
    distortion_warmup: float | None = None,
    progress: bool = True,
) -> Manifest:
    import torch

    from models.data import load_dataset
    from models.export import export_bundle
    from models.model import ModelConfig
    from models.train import TrainConfig, evaluate, train
    from models.train import distortion as preview_error
    from shared.errors import ConfigError
    from shared.manifest import check_name

    check_name(name)  # now, not after minutes of training
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; choose one of {sorted(OBJECTIVES)}")
    preview, weight, warmup = OBJECTIVES[objective]
    if (distortion is not None or distortion_warmup is not None) and not preview:
        raise ConfigError(f"objective {objective!r} has no distortion term; use --objective rd")
    if distortion_warmup is not None and not 0 <= distortion_warmup <= 1:
        raise ConfigError(f"distortion warm-up {distortion_warmup} is not a fraction of the training steps; "
                          "give a value from 0 (full weight from the start) to 1")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_split = load_dataset(data, "train", seed=seed)
    val_split = load_dataset(data, "val", seed=seed)
    heads = [t.strip() for t in fallback.split(",") if t.strip()]
    if heads:  # refuse a head for a task that will not be served now, not after minutes of training
        from models.tune import check_fallback_tasks

        check_fallback_tasks(heads, [t.name for t in train_split.tasks if t.name not in train_split.held_out])
    cfg = ModelConfig(encoder=encoder, bits=bits, bottleneck=bottleneck, preview=preview)  # type: ignore[arg-type]
    tcfg = TrainConfig(seed=seed, distortion=weight if distortion is None else distortion,
                       distortion_warmup=warmup if distortion_warmup is None else distortion_warmup)
    overrides = {k: v for k, v in {"epochs": epochs, "rate_lambda": rate_lambda}.items() if v is not None}
    tcfg = replace(tcfg, **overrides)
    log.info("training %s encoder on %s (%d samples, %d epochs)", encoder, data, len(train_split),
             tcfg.epochs)
    result = train(cfg, tcfg, train_split, progress=progress)
    val = evaluate(result, val_split)
    log.info("trained in %.0f s; validation: %s", result.seconds, {k: round(v, 4) for k, v in val.items()})
    facts: dict[str, float | int | str] = {
        "seed": seed,
        "epochs": tcfg.epochs,
        "rate_lambda": tcfg.rate_lambda,
        "distortion": tcfg.distortion,
        "distortion_warmup": tcfg.distortion_warmup,
        "preview": cfg.preview,
    }
    facts.update({f"val_{k}": round(v, 4) for k, v in val.items()})
    if cfg.preview:
        facts["val_preview_mse"] = round(preview_error(result, val_split), 4)
    manifest = export_bundle(result, train_split, out, name=name, codec=codec, training=facts)
    if heads:  # device-side heads, trained on the exported (frozen) device half
        from models.tune import TuneConfig, add_fallback_heads

        manifest = add_fallback_heads(out, heads, data=data, config=TuneConfig(seed=seed))
    log.info("bundle written to %s (fingerprint %s...)", out, manifest.device_fingerprint[:16])
    return manifest
