"""Task metrics, numpy only: from raw outputs (training) or from decoded predictions (HTTP)."""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "chance", "metric", "score"]

# kind -> (metric name, higher is better)
METRICS = {
    "classification": ("accuracy", True),
    "regression": ("mae", False),
    "dense": ("miou", True),
    "image": ("mse", False),  # per pixel and channel, on the [0, 1] scale
}


def metric(kind: str, predicted: np.ndarray, labels: np.ndarray) -> float:
    """Metric from predicted class indices (classification), values (regression) or class maps (dense)."""
    if kind == "classification":
        return float((predicted.reshape(labels.shape) == labels).mean())
    if kind == "regression":
        return float(np.abs(predicted.reshape(labels.shape) - labels).mean())
    if kind == "image":
        return float(((predicted.reshape(labels.shape) - labels) ** 2).mean())
    ious = []
    for cls in np.union1d(np.unique(predicted), np.unique(labels)):
        union = ((predicted == cls) | (labels == cls)).sum()
        ious.append(((predicted == cls) & (labels == cls)).sum() / union)
    return float(np.mean(ious))


def score(kind: str, outputs: np.ndarray, labels: np.ndarray) -> float:
    """Metric from raw decoder outputs: logits (B, K), values (B, V) or maps (B, K, H, W)."""
    if kind == "classification":
        return metric(kind, outputs.argmax(-1), labels)
    if kind == "dense":
        return metric(kind, outputs.argmax(1), labels)
    return metric(kind, outputs, labels)


def chance(kind: str, labels: np.ndarray) -> float | None:
    """What ignoring the input scores: the majority class, the median value, or the majority
    class everywhere in a map (None for kinds without labels to guess)."""
    if kind == "classification":
        return float(np.bincount(labels).max() / len(labels))
    if kind == "regression":
        return float(np.abs(labels - np.median(labels, axis=0)).mean())
    if kind == "dense":
        majority = np.bincount(labels.ravel()).argmax()
        return metric(kind, np.full_like(labels, majority), labels)
    return None
