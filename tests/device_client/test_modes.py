"""Where the parts run: split, cloud-only, device-only and auto give the same answers and say where."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from device_client import DeviceClient
from models.data import make_shapes
from shared.errors import BundleError, ConfigError


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_shapes("test", count=4, seed=7).images


def indices(result: object) -> dict[str, list[object]]:
    predictions = result.response.predictions  # type: ignore[attr-defined]
    return {task: [getattr(p, "index", getattr(p, "values", None)) for p in preds]
            for task, preds in predictions.items() if task != "mask"}


@pytest.mark.parametrize("mode", ["cloud", "device"])
def test_each_mode_answers_as_split_does(server: str, tiny_bundle: Path, images: np.ndarray, mode: str) -> None:
    with DeviceClient(tiny_bundle, server) as split, DeviceClient(tiny_bundle, server, mode=mode) as other:  # type: ignore[arg-type]
        for image in images:
            a, b = split.predict([image]), other.predict([image])
            assert (a.path, a.encoder_at, a.decoders_at) == ("split", "device", "cloud")
            classes = {t: v for t, v in indices(a).items() if t != "size"}
            assert {t: v for t, v in indices(b).items() if t != "size"} == classes
            if mode == "cloud":
                assert (b.path, b.encoder_at, b.decoders_at, b.answered_by) == ("cloud", "cloud", "cloud", "cloud")
                assert b.payload_bytes > a.payload_bytes  # a PNG is bigger than the payload
            else:
                assert (b.path, b.encoder_at, b.decoders_at, b.answered_by) == ("device", "device", "device", "device")
                assert b.payload_bytes == 0


def test_device_only_without_decoders_says_what_to_copy(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "tiny"))
    shutil.rmtree(copy / "cloud")
    with pytest.raises(BundleError, match="copy the bundle's cloud/ folder"):
        DeviceClient(copy, "http://127.0.0.1:9", mode="device")
    with DeviceClient(copy, "http://127.0.0.1:9", mode="auto") as auto:
        assert auto.chooser is not None and list(auto.chooser.paths) == ["split", "cloud"]


def test_a_bad_mode_is_refused(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="mode must be one of"):
        DeviceClient(tiny_bundle, "http://127.0.0.1:9", mode="edge")  # type: ignore[arg-type]


def test_auto_tries_every_path_and_knows_each(server: str, tiny_bundle: Path, images: np.ndarray) -> None:
    with DeviceClient(tiny_bundle, server, mode="auto") as auto:
        results = [auto.predict([images[i % len(images)]]) for i in range(12)]
        assert auto.chooser is not None
        assert all(auto.chooser.predicted_ms(path) is not None for path in ("split", "cloud", "device"))
    assert {r.path for r in results[:3]} == {"split", "cloud", "device"}
    # Which path wins on loopback depends on the machine's load: the choice itself is tested on
    # fake timings in test_chooser.py, and measured over real links by `devtune bench link`.
    assert {(r.path, r.encoder_at, r.decoders_at) for r in results} <= {
        ("split", "device", "cloud"), ("cloud", "cloud", "cloud"), ("device", "device", "device")}


def test_threads_reach_every_device_session(tiny_bundle: Path) -> None:
    """On a device that runs other work, one thread a session keeps ONNX Runtime from spinning."""
    with DeviceClient(tiny_bundle, "http://127.0.0.1:9", mode="device", threads=1) as client:
        assert client.decoders is not None
        sessions = [client.encoder.session, *client.decoders.sessions.values()]
        assert [s.get_session_options().intra_op_num_threads for s in sessions] == [1] * len(sessions)
