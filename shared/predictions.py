"""Raw decoder outputs -> typed predictions, the same on cloud and device fallback."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.manifest import TaskSpec
from shared.protocol import Classification, Dense, Image, Prediction, Regression

__all__ = ["to_predictions"]


def _softmax(logits: npt.NDArray[np.float32], axis: int) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]


def to_predictions(task: TaskSpec, outputs: npt.NDArray[np.float32]) -> list[Prediction]:
    """One prediction per sample from a decoder's (B, ...) output."""
    if task.kind == "classification":
        probs = _softmax(outputs, axis=-1)
        best = probs.argmax(axis=-1)
        classes = task.classes or [str(i) for i in range(outputs.shape[-1])]
        return [
            Classification(label=classes[int(k)], index=int(k), score=float(probs[i, k]))
            for i, k in enumerate(best)
        ]
    if task.kind == "regression":
        return [Regression(values=[float(v) for v in row]) for row in outputs.reshape(len(outputs), -1)]
    if task.kind == "image":  # (B, 3, H, W) in [0, 1] -> (H, W, 3) uint8 per sample
        pixels = (np.clip(outputs, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
        return [Image(shape=(int(p.shape[0]), int(p.shape[1]), 3), data=p.tobytes()) for p in pixels]
    maps = outputs.argmax(axis=1).astype(np.uint8)  # (B, H, W) class per pixel
    return [Dense(shape=(int(m.shape[0]), int(m.shape[1])), data=m.tobytes()) for m in maps]
