"""The real server on 127.0.0.1: predictions over HTTP, and every bad request answered 4xx."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgpack
import numpy as np
import onnxruntime as ort
import pytest

from device_client import DeviceClient, DeviceEncoder
from models.data import make_shapes
from shared.bundle import read_manifest
from shared.errors import RemoteError
from shared.protocol import CONTENT_TYPE, Classification, Dense, Regression, pack_request
from shared.quantization import dequantize

MSGPACK = {"Content-Type": CONTENT_TYPE}


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> DeviceEncoder:
    return DeviceEncoder(tiny_bundle)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_shapes("test", count=6).images


def valid_body(encoder: DeviceEncoder, images: np.ndarray, **kwargs: object) -> bytes:
    return pack_request(encoder.request(encoder.encode(list(images[:2])), **kwargs))  # type: ignore[arg-type]


def test_health_ready_and_bundles(server: str, tiny_bundle: Path) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").status_code == 200
    (listed,) = httpx.get(f"{server}/v1/bundles").json()
    manifest = read_manifest(tiny_bundle)
    assert listed["fingerprint"] == manifest.device_fingerprint
    assert [t["name"] for t in listed["tasks"]] == manifest.task_names
    assert listed["representation"]["codec"] == "rans"


def test_predictions_over_http_match_the_bundle_run_locally(server: str, tiny_bundle: Path,
                                                            images: np.ndarray) -> None:
    manifest = read_manifest(tiny_bundle)
    with DeviceClient(tiny_bundle, server) as client:
        result = client.predict(list(images))
    assert result.answered_by == "cloud"
    assert set(result.response.predictions) == set(manifest.task_names)
    encoded = client.encoder.encode(list(images))
    z = dequantize(encoded.symbols, manifest.representation.quant)
    for task in manifest.tasks:
        (local,) = ort.InferenceSession(str(tiny_bundle / task.file)).run(None, {"z": z})
        remote = result.response.predictions[task.name]
        assert len(remote) == len(images)
        if task.kind == "classification":
            assert [p.index for p in remote if isinstance(p, Classification)] == local.argmax(-1).tolist()
        elif task.kind == "regression":
            values = [p.values for p in remote if isinstance(p, Regression)]
            assert np.allclose(values, local, atol=1e-4)
        else:
            maps = [np.frombuffer(p.data, np.uint8).reshape(p.shape) for p in remote if isinstance(p, Dense)]
            assert np.array_equal(np.stack(maps), local.argmax(1))


def test_subset_of_tasks(server: str, tiny_bundle: Path, images: np.ndarray) -> None:
    with DeviceClient(tiny_bundle, server) as client:
        result = client.predict(list(images[:1]), tasks=["size", "shape"])
    assert set(result.response.predictions) == {"size", "shape"}


def _post(server: str, body: bytes, headers: dict[str, str] = MSGPACK) -> httpx.Response:
    return httpx.post(f"{server}/v1/predict", content=body, headers=headers)


def _tamper(body: bytes, **changes: object) -> bytes:
    fields = msgpack.unpackb(body)
    for key, value in changes.items():
        if key.startswith("rep_"):
            fields["rep"][key[4:]] = value
        else:
            fields[key] = value
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def test_bad_requests_get_4xx_with_a_reason_and_the_server_keeps_answering(
    server: str, encoder: DeviceEncoder, images: np.ndarray
) -> None:
    body = valid_body(encoder, images)
    cases = {
        "json content type": (415, _post(server, body, {"Content-Type": "application/json"})),
        "oversized": (413, _post(server, b"\x00" * (64 * 1024 + 1))),
        "garbage": (400, _post(server, b"\xc1not msgpack")),
        "truncated": (400, _post(server, body[:-7])),
        "missing field": (400, _post(server, msgpack.packb({"v": 1}))),
        "mistyped shape": (400, _post(server, _tamper(body, rep_shape="2x64x8"))),
        "wrong shape": (400, _post(server, _tamper(body, rep_shape=[2, 64, 4]))),
        "cut payload": (400, _post(server, _tamper(body, rep_data=msgpack.unpackb(body)["rep"]["data"][:-3]))),
        "wrong codec": (400, _post(server, _tamper(body, rep_codec="raw-uint8"))),
        "wrong bits": (400, _post(server, _tamper(body, rep_bits=8))),
        "old protocol": (400, _post(server, _tamper(body, v=0))),
        "fingerprint": (409, _post(server, _tamper(body, bundle="0" * 64))),
        "unknown task": (404, _post(server, _tamper(body, tasks=["shape", "weather"]))),
    }
    for name, (status, answer) in cases.items():
        assert answer.status_code == status, (name, answer.text)
        error = answer.json()
        assert error["error"] and len(error["detail"]) > 20, (name, error)
    assert cases["fingerprint"][1].json()["expected"] == encoder.manifest.device_fingerprint
    assert "shape" in cases["unknown task"][1].json()["known"]
    assert "weather" in cases["unknown task"][1].json()["detail"]
    assert _post(server, body).status_code == 200


def test_client_turns_error_answers_into_clear_messages(server: str, tiny_bundle: Path,
                                                        images: np.ndarray) -> None:
    with (DeviceClient(tiny_bundle, server) as client,
          pytest.raises(RemoteError, match="404 unknown_task.*weather") as info):
        client.predict(list(images[:1]), tasks=["weather"])
    assert info.value.status == 404


def test_client_says_when_the_server_is_unreachable(tiny_bundle: Path, images: np.ndarray) -> None:
    from devtune.server_process import free_port

    with (DeviceClient(tiny_bundle, f"http://127.0.0.1:{free_port()}", retries=1) as client,
          pytest.raises(RemoteError, match="cannot reach .*devtune serve")):
        client.predict(list(images[:1]))
