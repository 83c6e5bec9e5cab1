"""Open Inference Protocol v2: a stock tritonclient, plain JSON and msgpack get the /v1 answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from cloud_server import oip
from cloud_server.app import create_app
from cloud_server.settings import CloudSettings
from device_client import DeviceClient, DeviceEncoder
from models.data import make_shapes
from shared.bundle import read_manifest
from shared.manifest import Manifest
from shared.protocol import Classification, Dense, Prediction, Regression

Outputs = dict[str, npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def manifest(tiny_bundle: Path) -> Manifest:
    return read_manifest(tiny_bundle)


@pytest.fixture(scope="module")
def images() -> list[npt.NDArray[np.uint8]]:
    return list(make_shapes("test", count=4).images)


@pytest.fixture(scope="module")
def symbols(tiny_bundle: Path, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    return DeviceEncoder(tiny_bundle).encode(images).symbols  # (4, N, C)


@pytest.fixture(scope="module")
def expected(
    server: str, tiny_bundle: Path, images: list[npt.NDArray[np.uint8]]
) -> dict[str, list[Prediction]]:
    """What /v1/predict answers for the same images."""
    with DeviceClient(tiny_bundle, server) as client:
        return client.predict(images).response.predictions


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    yield client
    client.close()


def infer_url(server: str) -> str:
    return f"{server}/v2/models/tiny/infer"


def assert_same_as_v1(outputs: Outputs, expected: dict[str, list[Prediction]], manifest: Manifest) -> None:
    """Raw OIP outputs give the /v1 predictions: argmax for classes and maps, values for regression."""
    assert outputs
    for name, output in outputs.items():
        task, predictions = manifest.task(name), expected[name]
        assert output.dtype == np.float32 and output.shape == (len(predictions), *task.output_shape)
        if task.kind == "classification":
            assert output.argmax(-1).tolist() == [
                p.index for p in predictions if isinstance(p, Classification)
            ]
        elif task.kind == "regression":
            values = [p.values for p in predictions if isinstance(p, Regression)]
            assert np.allclose(output.reshape(len(output), -1), values, rtol=0, atol=1e-6)
        else:
            maps = [
                np.frombuffer(p.data, np.uint8).reshape(p.shape) for p in predictions if isinstance(p, Dense)
            ]
            assert np.array_equal(output.argmax(1), np.stack(maps))


def request_for(symbols: npt.NDArray[np.uint8], data: Any, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "representation", "datatype": "UINT8", "shape": list(symbols.shape), "data": data}
    return {"inputs": [tensor], **extra}


def reason(answer: httpx.Response) -> str:
    body = answer.json()
    return str(body.get("detail") or body["error"])


# ------------------------------------------------------------------ tritonclient


def triton_input(
    values: npt.NDArray[Any], datatype: str = "UINT8", shape: list[int] | None = None, binary: bool = True
) -> triton.InferInput:
    tensor = triton.InferInput("representation", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor.set_shape(shape) if shape is not None else tensor


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "device-tuning" and "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_describes_the_bundle(
    client: triton.InferenceServerClient, manifest: Manifest
) -> None:
    n, c = manifest.representation.shape
    for version in ("", "1"):
        metadata = client.get_model_metadata("tiny", model_version=version)
        assert metadata["name"] == "tiny" and metadata["versions"] == ["1"]
        assert metadata["inputs"] == [{"name": "representation", "datatype": "UINT8", "shape": [-1, n, c]}]
        assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
            (t.name, "FP32", [-1, *t.output_shape]) for t in manifest.tasks
        ]
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", model_version="1")
    assert not client.is_model_ready("tiny", model_version="2") and not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_gives_the_v1_answers(
    client: triton.InferenceServerClient,
    symbols: npt.NDArray[np.uint8],
    expected: dict[str, list[Prediction]],
    manifest: Manifest,
    binary: bool,
) -> None:
    result = client.infer("tiny", [triton_input(symbols, binary=binary)], request_id="req-7")
    answer = result.get_response()
    assert answer["id"] == "req-7" and answer["model_name"] == "tiny" and answer["model_version"] == "1"
    names = [output["name"] for output in answer["outputs"]]
    assert names == manifest.task_names
    assert_same_as_v1({name: result.as_numpy(name) for name in names}, expected, manifest)


def test_requested_outputs_are_the_only_ones_answered(
    client: triton.InferenceServerClient,
    symbols: npt.NDArray[np.uint8],
    expected: dict[str, list[Prediction]],
    manifest: Manifest,
) -> None:
    tensor = triton_input(symbols)
    wanted = [triton.InferRequestedOutput("size", binary_data=False), triton.InferRequestedOutput("mask")]
    result = client.infer(
        "tiny", [tensor], outputs=wanted, model_version="1", request_compression_algorithm="gzip"
    )
    size, mask = result.get_response()["outputs"]
    assert (size["name"], mask["name"]) == ("size", "mask")
    assert "data" in size and mask["parameters"]["binary_data_size"] == result.as_numpy("mask").nbytes
    assert_same_as_v1({"size": result.as_numpy("size"), "mask": result.as_numpy("mask")}, expected, manifest)


def test_tritonclient_errors_carry_the_status(
    client: triton.InferenceServerClient, symbols: npt.NDArray[np.uint8]
) -> None:
    floats = triton_input(symbols.astype(np.float32), "FP32")
    short = triton_input(symbols[:3], shape=list(symbols.shape))  # says 4 samples, carries 3
    weather = [triton.InferRequestedOutput("weather")]
    for model, inputs, outputs, status in [
        ("tiny", [floats], None, "400"),
        ("tiny", [short], None, "400"),
        ("tiny", [triton_input(symbols)], weather, "404"),
        ("nope", [triton_input(symbols)], None, "404"),
    ]:
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, inputs, outputs=outputs)
        assert info.value.status() == status, info.value
    assert client.is_server_ready()


# ------------------------------------------------------------------ plain HTTP: JSON, binary, msgpack


def test_plain_json_with_nested_data(
    server: str, symbols: npt.NDArray[np.uint8], expected: dict[str, list[Prediction]], manifest: Manifest
) -> None:
    body = request_for(symbols, symbols.tolist(), id="nested", outputs=[{"name": "shape"}, {"name": "color"}])
    answer = httpx.post(infer_url(server), json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    reply = answer.json()
    assert reply["id"] == "nested" and [o["name"] for o in reply["outputs"]] == ["shape", "color"]
    outputs = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in reply["outputs"]}
    assert_same_as_v1(outputs, expected, manifest)


def test_binary_output_asked_by_a_json_request(
    server: str, symbols: npt.NDArray[np.uint8], expected: dict[str, list[Prediction]], manifest: Manifest
) -> None:
    body = request_for(symbols, symbols.ravel().tolist(), parameters={"binary_data_output": True})
    answer = httpx.post(infer_url(server), json=body)
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    reply, tail = json.loads(answer.content[:length]), answer.content[length:]
    outputs, offset = {}, 0
    for output in reply["outputs"]:
        size = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = np.frombuffer(tail[offset : offset + size], "<f4").reshape(output["shape"])
        offset += size
    assert offset == len(tail)
    assert_same_as_v1(outputs, expected, manifest)


def test_msgpack_carries_tensors_as_bytes(
    server: str, symbols: npt.NDArray[np.uint8], expected: dict[str, list[Prediction]], manifest: Manifest
) -> None:
    body = request_for(symbols, symbols.tobytes(), id="mp", outputs=[{"name": "mask"}, {"name": "texture"}])
    answer = httpx.post(
        infer_url(server), content=msgpack.packb(body), headers={"Content-Type": "application/vnd.msgpack"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.msgpack"
    reply = msgpack.unpackb(answer.content)
    assert reply["id"] == "mp" and reply["model_version"] == "1"
    outputs = {o["name"]: np.frombuffer(o["data"], "<f4").reshape(o["shape"]) for o in reply["outputs"]}
    assert list(outputs) == ["mask", "texture"]
    assert_same_as_v1(outputs, expected, manifest)


def binary_body(symbols: npt.NDArray[np.uint8], raw: bytes, declared: int) -> tuple[bytes, dict[str, str]]:
    tensor = {
        "name": "representation",
        "datatype": "UINT8",
        "shape": list(symbols.shape),
        "parameters": {"binary_data_size": declared},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_bad_requests_get_4xx_with_a_reason_and_the_server_keeps_answering(
    server: str, symbols: npt.NDArray[np.uint8]
) -> None:
    url, good, size = infer_url(server), symbols.ravel().tolist(), symbols.size
    n, c = symbols.shape[1:]
    floats = request_for(symbols, good)
    floats["inputs"][0]["datatype"] = "FP32"
    thin = request_for(symbols[:, :, : c // 2], good[: size // 2])
    cut, cut_headers = binary_body(symbols, symbols.tobytes()[:-1], size - 1)
    short, valid = request_for(symbols, good[:-1]), request_for(symbols, good)
    weather = request_for(symbols, good, outputs=[{"name": "weather"}])
    cut_message = f"expected {size} bytes for shape {list(symbols.shape)} UINT8, got {size - 1}"
    cases = [
        ("wrong datatype", 400, "UINT8", httpx.post(url, json=floats)),
        ("wrong shape", 400, f"[B, {n}, {c}]", httpx.post(url, json=thin)),
        ("too few values", 400, f"expected {size} values", httpx.post(url, json=short)),
        ("byte length", 400, cut_message, httpx.post(url, content=cut, headers=cut_headers)),
        ("floats", 400, "integers 0..255", httpx.post(url, json=request_for(symbols, [0.5] * size))),
        ("outside the levels", 400, "levels", httpx.post(url, json=request_for(symbols, [255] * size))),
        ("not json", 400, "not valid JSON", httpx.post(url, content=b"{inputs")),
        ("no inputs", 400, "exactly one input", httpx.post(url, json={"inputs": []})),
        ("bad version", 400, "positive integer", httpx.post(f"{server}/v2/models/tiny/versions/v1/infer")),
        ("unknown model", 404, "nope", httpx.post(f"{server}/v2/models/nope/infer", json=valid)),
        ("unknown version", 404, "v9", httpx.get(f"{server}/v2/models/tiny/versions/9")),
        ("unknown output", 404, "weather", httpx.post(url, json=weather)),
    ]
    for name, status, needle, answer in cases:
        assert answer.status_code == status, (name, answer.text)
        assert needle in reason(answer) and len(reason(answer)) > 20, (name, answer.text)
    assert httpx.post(url, json=valid).status_code == 200


# ------------------------------------------------------------------ in process: readiness and keys


def test_not_ready_without_a_bundle_and_models_need_a_key() -> None:
    app = create_app(CloudSettings(auth="on", api_keys=["secret"]))  # lifespan not run: nothing loaded

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://oip.test") as local:
            return [
                await local.get("/v2/health/live"),
                await local.get("/v2"),
                await local.get("/v2/health/ready"),
                await local.get("/v2/models/tiny"),
                await local.get("/v2/models/tiny", headers={"Authorization": "Bearer secret"}),
            ]

    live, metadata, ready, keyless, keyed = asyncio.run(ask())
    assert live.status_code == 200 and metadata.json()["name"] == "device-tuning"
    assert ready.status_code == 400
    assert keyless.status_code == 401
    assert keyed.status_code == 404 and "not loaded" in reason(keyed)


def test_public_surface() -> None:
    assert sorted(oip.__all__) == [
        "HEADER_LENGTH",
        "INPUT_NAME",
        "InferRequest",
        "RequestedOutput",
        "encode_response",
        "oip_public_router",
        "oip_router",
        "parse_request",
    ]
