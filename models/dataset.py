"""What a data set is: images, one label array per task, and what each task asks for.

Its own module so that the built-in generators (:mod:`models.data`) and the user-data
reader (:mod:`models.userdata`) both build on it without importing each other.
Numpy only: the device half can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["IMAGE_SIZE", "MASK_SIZE", "SPLIT_SIZES", "Dataset", "TaskInfo"]

IMAGE_SIZE = 64  # input side H = W of every data set, built in or from a folder
MASK_SIZE = 32  # side of a dense task's label map
SPLIT_SIZES = {"train": 8000, "val": 1000, "test": 1000}  # the splits, and their size in ``shapes``


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: Literal["classification", "regression", "dense"]
    classes: list[str] | None = None
    units: str | None = None
    weight: float = 1.0  # weight of this task's loss in joint training


@dataclass(frozen=True)
class Dataset:
    """Images (B, H, W, 3) uint8 and one label array per task."""

    name: str
    images: npt.NDArray[np.uint8]
    labels: dict[str, np.ndarray]
    tasks: list[TaskInfo]
    held_out: list[str] = field(default_factory=list)
    """Tasks present in the data that the default bundle is not trained on."""

    def __len__(self) -> int:
        return int(self.images.shape[0])
