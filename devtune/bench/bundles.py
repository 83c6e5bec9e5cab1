"""The bundle a benchmark measures: the default one is trained when it is missing, and the
training that made it can be repeated with more tasks (the joint-training ceiling)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.train import TrainConfig
    from shared.manifest import Manifest

__all__ = ["DEFAULT_BUNDLE", "ensure_bundle", "joint_train_config"]

log = logging.getLogger("devtune")

DEFAULT_BUNDLE = Path("bundles/default")


def ensure_bundle(bundle: Path, data: str = "shapes") -> None:
    """Return when ``bundle`` has a manifest; train the default bundle on ``data`` if that is the one missing.

    Any other missing bundle is an error: a benchmark never trains into a path it was handed.
    """
    from shared.bundle import MANIFEST_FILE

    if (bundle / MANIFEST_FILE).is_file():
        return
    if bundle != DEFAULT_BUNDLE:
        raise FileNotFoundError(f"no bundle at {bundle} (no {MANIFEST_FILE}); pass a bundle made by `devtune train`")
    from devtune.pipeline import train_bundle

    log.info("no bundle at %s: training the default one (a few minutes on 2 cores)", bundle)
    train_bundle(bundle, data=data, progress=False)


def joint_train_config(manifest: Manifest, tasks: Sequence[str], epochs: int | None = None) -> TrainConfig:
    """The bundle's training again (epochs, rate lambda, distortion weight, its warm-up and the seed,
    from its manifest) with ``tasks`` added.

    ``epochs`` overrides the bundle's. Training the bundle's model config with this from
    scratch gives what the added tasks reach when they are there from the start.
    """
    from models.train import TrainConfig

    facts = manifest.training
    return TrainConfig(
        epochs=epochs or int(facts.get("epochs", TrainConfig.epochs)),
        rate_lambda=float(facts.get("rate_lambda", TrainConfig.rate_lambda)),
        seed=int(facts.get("seed", TrainConfig.seed)),
        # an rd bundle serves its preview as a task of kind image: not a label, the distortion term
        tasks=(*(task.name for task in manifest.tasks if task.kind != "image"), *tasks),
        distortion=float(facts.get("distortion", 0.0)),
        distortion_warmup=float(facts.get("distortion_warmup", 0.0)),
    )
