"""Training the device half: held-out labels never reach it, and the rd objective trains a preview."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.data import make_shapes
from models.model import PREVIEW, ModelConfig
from models.train import TrainConfig, distortion, distortion_weight, train
from shared.errors import ConfigError

TINY = ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32, bits=4, preview=16)
RD = TrainConfig(epochs=1, batch_size=64, distortion=2.0)


def _without_held_out(data):  # type: ignore[no-untyped-def]
    kept = [t for t in data.tasks if t.name not in data.held_out]
    labels = {name: value for name, value in data.labels.items() if name not in data.held_out}
    return dataclasses.replace(data, labels=labels, tasks=kept, held_out=[])


def test_held_out_labels_never_reach_the_device_half() -> None:
    """The same weights, to the bit, whether the held-out columns are in the data or removed."""
    data = make_shapes("train", count=192)
    assert data.held_out
    with_suite = train(TINY, RD, data, progress=False).model.state_dict()
    without = train(TINY, RD, _without_held_out(data), progress=False).model.state_dict()
    assert with_suite.keys() == without.keys()
    for name, tensor in with_suite.items():
        assert torch.equal(tensor, without[name]), name


def test_a_changed_held_out_label_changes_nothing_but_a_trained_one_does() -> None:
    """The check above can fail: shuffling a trained label does move the weights."""
    data = make_shapes("train", count=192)
    base = train(TINY, RD, data, progress=False).model.state_dict()
    labels = dict(data.labels)
    labels["color"] = labels["color"][::-1].copy()
    moved = train(TINY, RD, dataclasses.replace(data, labels=labels), progress=False).model.state_dict()
    assert not torch.equal(base["encoder.pos"], moved["encoder.pos"])


def test_rd_objective_trains_a_preview_that_beats_a_constant_image() -> None:
    data, val = make_shapes("train", count=512), make_shapes("val", count=128)
    result = train(TINY, dataclasses.replace(RD, epochs=2), data, progress=False)
    outputs, _ = result.model(torch.zeros(1, 3, 64, 64))
    assert outputs[PREVIEW].shape == (1, 3, 16, 16)
    # the thumbnails vary by 0.45 (normalized units) around their mean color: a preview that
    # learned nothing scores about that
    assert distortion(result, val) < 0.35
    assert TrainConfig(distortion=2.0).objective == "tasks+rate+distortion"


def test_distortion_without_a_preview_decoder_is_refused() -> None:
    with pytest.raises(ConfigError, match="preview"):
        train(dataclasses.replace(TINY, preview=0), RD, make_shapes("train", count=64), progress=False)



def test_a_distortion_warm_up_gives_the_tasks_the_first_steps() -> None:
    warmed = TrainConfig(distortion=2.0, distortion_warmup=0.5)
    assert [distortion_weight(warmed, step, 100) for step in (0, 25, 50, 99)] == [0.0, 1.0, 2.0, 2.0]
    assert distortion_weight(TrainConfig(distortion=2.0), 0, 100) == 2.0  # no warm-up: full weight at once
