"""Cloud-only: POST an image, the server runs the bundle's encoder; bounded, and refused clearly."""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest

from device_client import DeviceClient
from models.data import make_shapes
from shared.images import encode_image
from shared.protocol import CONTENT_TYPE, unpack_response


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_shapes("test", count=4, seed=5).images


def labels(body: bytes) -> dict[str, list[object]]:
    answer = unpack_response(body)
    return {task: [getattr(p, "index", None) for p in preds] for task, preds in answer.predictions.items()}


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds almost none (valid CRCs)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_png_gets_the_answers_split_gets(server: str, tiny_bundle: Path, images: np.ndarray) -> None:
    with DeviceClient(tiny_bundle, server) as client:
        for image in images:
            split = client.predict([image])
            answer = httpx.post(f"{server}/v1/predict/image", content=encode_image(image, "PNG"),
                                headers={"Content-Type": "image/png"}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-Devtune-Encoder"] == "cloud"
            assert answer.headers["X-Devtune-Decoders"] == "cloud"
            assert unpack_response(answer.content).answered_by == "cloud"
            # PNG is lossless and both halves preprocess with shared.images: the same encoder input.
            assert labels(answer.content) == labels(msgpack_free(split.response))


def msgpack_free(response: object) -> bytes:
    from shared.protocol import pack_response

    return pack_response(response)  # type: ignore[arg-type]


def test_a_jpeg_in_msgpack_with_tasks(server: str, images: np.ndarray) -> None:
    body = msgpack.packb({"image": encode_image(images[0], "JPEG", 90), "tasks": ["shape"], "id": "j1"})
    answer = httpx.post(f"{server}/v1/predict/image", content=body, headers={"Content-Type": CONTENT_TYPE})
    assert answer.status_code == 200, answer.text
    parsed = unpack_response(answer.content)
    assert list(parsed.predictions) == ["shape"] and parsed.id == "j1"


@pytest.mark.parametrize(("content_type", "body", "status", "says"), [
    ("text/plain", b"hello", 415, "image/png"),
    ("image/png", b"not an image at all", 400, "PNG or JPEG"),
    ("image/png", png_header(3000, 3000), 413, "pixel limit"),
    ("image/png", png_header(50_000, 50_000), 413, "decompression bomb"),
    (CONTENT_TYPE, msgpack.packb({"picture": b""}), 400, "image"),
], ids=["text", "garbage", "over-our-limit", "bomb", "msgpack-without-image"])
def test_what_it_refuses(server: str, content_type: str, body: bytes, status: int, says: str) -> None:
    answer = httpx.post(f"{server}/v1/predict/image", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]


def test_a_jpeg_sent_as_png_and_an_unknown_task(server: str, images: np.ndarray) -> None:
    jpeg = encode_image(images[0], "JPEG")
    answer = httpx.post(f"{server}/v1/predict/image", content=jpeg, headers={"Content-Type": "image/png"})
    assert answer.status_code == 400 and "Content-Type" in answer.json()["detail"]
    answer = httpx.post(f"{server}/v1/predict/image?tasks=nope", content=jpeg,
                        headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_task"


@pytest.fixture(scope="module")
def cloud_half_only(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose bundle directory lacks device/: it serves msgpack, not images."""
    from devtune.server_process import ServerProcess

    copy = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("nodevice") / "tiny"))
    shutil.rmtree(copy / "device")
    with ServerProcess(copy, auth="off") as process:
        yield process.url


def test_without_the_device_half_in_the_cloud_it_answers_404(cloud_half_only: str, images: np.ndarray) -> None:
    answer = httpx.post(f"{cloud_half_only}/v1/predict/image", content=encode_image(images[0], "PNG"),
                        headers={"Content-Type": "image/png"})
    assert answer.status_code == 404, answer.text
    assert "no device half in the cloud" in answer.json()["detail"]
