"""What the rate benchmark trains and measures: ``RateSweep``, and its two presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this package to build its parser: no torch at import time
    from models.model import ModelConfig

__all__ = ["FULL", "QUICK", "RateSweep"]


@dataclass(frozen=True)
class RateSweep:
    """What to train and measure. Every size is a parameter so tests can run it tiny."""

    points: tuple[tuple[int, float], ...]  # (bits, rate lambda) of each sweep model
    model: ModelConfig | None = None  # architecture; None: ModelConfig(). bits is set per point
    epochs: int = 6  # every model, reference and cloud-only included: same schedule
    train_samples: int = 8000
    test_samples: int = 1000
    jpeg_qualities: tuple[int, ...] = (10, 25, 50, 75, 90)
    jpeg_augment: bool = False  # train a separate cloud-only model on half JPEG-coded images
    seed: int = 0  # data and training
    zstd_level: int = 19
    histogram_samples: int = 4000  # training samples behind the coder's tables, as export does


QUICK = RateSweep(points=((4, 5e-4), (2, 5e-4)), epochs=3, train_samples=2048, test_samples=500)
FULL = RateSweep(
    points=((4, 1e-4), (4, 5e-4), (4, 2e-3), (4, 8e-3), (2, 5e-4), (8, 5e-4), (8, 2e-3), (8, 8e-3)),
    jpeg_qualities=(5, 10, 25, 50, 75, 90, 95),
)
