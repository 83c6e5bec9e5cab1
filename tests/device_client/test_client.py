"""The device client against the real server: protocol v2 by default, v1 on request, both codecs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest

from device_client import DeviceClient, DeviceEncoder
from models.data import make_shapes
from shared.bundle import read_bytes_checked, read_manifest, write_manifest
from shared.manifest import CODEC_IDS, device_fingerprint
from shared.protocol import CONTENT_TYPE, PredictResponse, pack_request, unpack_response

MSGPACK = {"Content-Type": CONTENT_TYPE}


def with_codec(bundle: Path, out: Path, codec: str) -> Path:
    """A copy of ``bundle`` whose representation uses ``codec`` (same tables), fingerprint redone."""
    copy = Path(shutil.copytree(bundle, out))
    manifest = read_manifest(copy)
    representation = manifest.representation.model_copy(update={"codec": codec})
    encoder = read_bytes_checked(copy, manifest, manifest.encoder_file)
    write_manifest(copy, manifest.model_copy(update={
        "representation": representation,
        "device_fingerprint": device_fingerprint(encoder, representation),
    }))
    return copy


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_shapes("test", count=5, seed=3).images


@pytest.fixture(scope="module")
def rans_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_codec(tiny_bundle, tmp_path_factory.mktemp("codec") / "rans", "rans")


@pytest.fixture(scope="module")
def lanes_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_codec(tiny_bundle, tmp_path_factory.mktemp("codec") / "lanes", "rans-lanes")


@pytest.fixture(scope="module")
def both_servers(rans_bundle: Path, lanes_bundle: Path) -> Iterator[dict[str, str]]:
    """One real server per codec, each serving its bundle."""
    from devtune.server_process import ServerProcess

    with ServerProcess(rans_bundle, auth="off") as rans, ServerProcess(lanes_bundle, auth="off") as lanes:
        yield {"rans": rans.url, "rans-lanes": lanes.url}


def same_answers(a: PredictResponse, b: PredictResponse) -> None:
    assert a.bundle == b.bundle and set(a.predictions) == set(b.predictions)
    for task, predictions in a.predictions.items():
        for left, right in zip(predictions, b.predictions[task], strict=True):
            assert left.kind == right.kind
            if left.kind == "regression":
                assert np.allclose(left.values, right.values, atol=1e-4)  # type: ignore[union-attr]
            elif left.kind == "classification":
                assert left.index == right.index  # type: ignore[union-attr]
            else:
                assert left.data == right.data  # type: ignore[union-attr]


@pytest.mark.parametrize("codec", ["rans", "rans-lanes"])
def test_v2_by_default_v1_on_request_same_answers(
    codec: str, both_servers: dict[str, str], rans_bundle: Path, lanes_bundle: Path, images: np.ndarray
) -> None:
    bundle = {"rans": rans_bundle, "rans-lanes": lanes_bundle}[codec]
    encoder = DeviceEncoder(bundle)
    encoded = encoder.encode([images[0]])
    with DeviceClient(encoder, both_servers[codec]) as v2, DeviceClient(encoder, both_servers[codec], protocol=1) as v1:
        assert v2.protocol == 2
        new, old = v2.send(encoded, request_id="one"), v1.send(encoded, request_id="one")
        same_answers(new.response, old.response)
        assert new.response.id == "one" and new.answered_by == "cloud"
        assert new.payload_bytes <= len(encoded.payload) + 40  # the compact framing's promise
        assert old.payload_bytes >= len(encoded.payload) + 150
        batch = v2.predict(list(images), tasks=["shape"])
        assert len(batch.response.predictions["shape"]) == len(images)


def test_the_codecs_give_the_same_answers(both_servers: dict[str, str], rans_bundle: Path, lanes_bundle: Path,
                                          images: np.ndarray) -> None:
    with DeviceClient(rans_bundle, both_servers["rans"]) as a, DeviceClient(lanes_bundle, both_servers["rans-lanes"]) as b:
        left, right = a.predict(list(images)).response, b.predict(list(images)).response
    assert left.bundle != right.bundle  # another codec is another device half
    same_answers(left, right.model_copy(update={"bundle": left.bundle}))


def test_v2_requests_the_server_refuses(both_servers: dict[str, str], lanes_bundle: Path, images: np.ndarray) -> None:
    url = both_servers["rans-lanes"]
    encoder = DeviceEncoder(lanes_bundle)
    fingerprint = encoder.manifest.device_fingerprint
    encoded = encoder.encode([images[0]])
    good = pack_request(encoder.request(encoded, protocol=2))
    fields = msgpack.unpackb(good)

    def post(changed: list[object]) -> httpx.Response:
        return httpx.post(f"{url}/v1/predict", content=msgpack.packb(changed, use_bin_type=True), headers=MSGPACK)

    foreign = post([*fields[:1], bytes(8), *fields[2:]])
    assert foreign.status_code == 409, foreign.text
    assert foreign.json()["expected"] == fingerprint  # the full fingerprint comes back
    wrong_codec = post([*fields[:2], CODEC_IDS["rans"], *fields[3:]])
    assert wrong_codec.status_code == 400 and "rans-lanes" in wrong_codec.json()["detail"]
    quant = encoder.manifest.representation.quant
    sent_right = post([*fields, None, None, [quant.bits, quant.scale, quant.zero_point]])
    assert sent_right.status_code == 200, sent_right.text
    sent_wrong = post([*fields, None, None, [8, quant.scale, quant.zero_point]])
    assert sent_wrong.status_code == 400 and "quantization" in sent_wrong.json()["detail"]
    cut = post([*fields[:4], fields[4][:-3]])
    assert cut.status_code == 400 and "re-encode" in cut.json()["detail"]
    answer = httpx.post(f"{url}/v1/predict", content=good, headers=MSGPACK)
    assert answer.status_code == 200 and unpack_response(answer.content).bundle == fingerprint


def test_an_unknown_protocol_is_refused_up_front(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match="protocol must be one of"):
        DeviceClient(tiny_bundle, "http://127.0.0.1:1", protocol=3)
