"""The built-in generator: the transfer suite is held out, and its labels carry nothing of the trained tasks."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import make_shapes

TRAINED = ["shape", "color", "texture", "size", "mask"]


@pytest.fixture(scope="module")
def shapes() -> object:
    return make_shapes("val", count=1000)


def _codes(labels: np.ndarray, bins: int = 4) -> np.ndarray:
    """One small integer per sample: classes as they are, anything else in quantile bins."""
    flat = labels.reshape(len(labels), -1)
    if flat.shape[1] > 1:  # a dense map: how much of it is set, in quantile bins
        flat = flat.mean(axis=1, keepdims=True)
    values = flat[:, 0]
    if labels.dtype.kind in "iu" and len(np.unique(values)) <= 8:
        return values.astype(np.int64)
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values).astype(np.int64)


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log2(joint[nonzero] / outer[nonzero])).sum())


def test_suite_is_held_out_and_covers_three_kinds(shapes: object) -> None:
    held = {t.name: t.kind for t in shapes.tasks if t.name in shapes.held_out}  # type: ignore[attr-defined]
    assert len(held) >= 10 and {"quadrant", "dots"} <= set(held)
    assert set(held.values()) == {"classification", "regression", "dense"}
    assert not set(held) & set(TRAINED)


def test_suite_labels_are_independent_of_trained_labels(shapes: object) -> None:
    """Mutual information between every held-out and every trained label is at the level of
    two independent draws of the same size (quadrant excepted: it is where the shape is,
    which the mask shows)."""
    labels = shapes.labels  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for held in shapes.held_out:  # type: ignore[attr-defined]
        for trained in TRAINED:
            if held == "quadrant" and trained == "mask":
                continue
            a, b = _codes(labels[held]), _codes(labels[trained])
            noise_floor = max(_mutual_information(rng.permutation(a), b) for _ in range(5))
            assert _mutual_information(a, b) < 3 * noise_floor + 0.01, (held, trained)


def test_quadrant_does_follow_the_mask(shapes: object) -> None:
    """The check above can see dependence: quadrant and the mask's centroid are tied."""
    labels = shapes.labels  # type: ignore[attr-defined]
    masks = labels["mask"].astype(np.float64)
    columns = (masks.sum(axis=1) * np.arange(32)).sum(axis=1) / masks.sum(axis=(1, 2)).clip(min=1)
    a, b = labels["quadrant"] % 2, _codes(columns)
    assert _mutual_information(a, b) > 0.3


def test_trained_factors_did_not_move_when_the_suite_was_added() -> None:
    """The suite's extra random stream left the trained tasks' labels as they were drawn before."""
    data = make_shapes("test", count=5)
    assert data.labels["shape"].tolist() == [3, 0, 1, 1, 0]
    assert data.labels["color"].tolist() == [3, 5, 0, 2, 0]
