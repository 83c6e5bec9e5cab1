"""Cloud-only inference: the device sends an image, the server runs the bundle's encoder itself.

For devices too weak to run the encoder. ``POST /v1/predict/image`` takes::

    Content-Type: image/png | image/jpeg      the body is the image; ?tasks=a,b &bundle=<fingerprint>
                                              &name=<bundle name> &id=<request id>, all optional
    Content-Type: application/vnd.msgpack     a map {"image": bin, "tasks": [str], "bundle": str,
                                              "name": str, "id": str}; only "image" is required

and answers the same msgpack ``PredictResponse`` as ``/v1/predict``, with the headers
``X-Devtune-Encoder: cloud`` and ``X-Devtune-Decoders: cloud`` saying where each part ran::

    image bytes ─► decode_image (header checked first) ─► preprocess (shared.images, as the device)
      ─► device/encoder.onnx ─► quantize ─► DataPlane.infer_symbols (the batcher, the decoders)

The symbols never cross a wire here, so the entropy codec is skipped. The encoder is the
bundle's own device half: the server loads it only when the bundle directory it serves
holds ``device/encoder.onnx`` and that file's sha256 is the manifest's (404 without it,
422 when it differs). Errors: 415 another media type, 413 a body or an image too large,
400 an image that does not decode.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloud_server.dataplane import DataPlane, Served
from cloud_server.deps import Plane, RequestLimits, inference_access, read_body
from cloud_server.openapi import PREDICT_OK, errors
from shared.bundle import read_bytes_checked
from shared.errors import BundleError, ProtocolError, UnsupportedMediaType
from shared.images import IMAGE_CONTENT_TYPES, ImageFormat, decode_image, preprocess
from shared.predictions import to_predictions
from shared.protocol import CONTENT_TYPE, MSGPACK_CONTENT_TYPES, PredictResponse, Timing, pack_response
from shared.quantization import quantize

__all__ = ["DECODERS_HEADER", "ENCODER_HEADER", "IMAGE_MAX_PIXELS", "CloudEncoder", "image_router"]

IMAGE_MAX_PIXELS = 2048 * 2048
"""Largest image the route decodes; the encoder takes far fewer pixels, so a device should resize first."""
ENCODER_HEADER = "X-Devtune-Encoder"
DECODERS_HEADER = "X-Devtune-Decoders"

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A PNG or JPEG image (the bundle's encoder runs in the cloud), or a msgpack map "
        '{"image": bin, "tasks": [str], "bundle": str, "name": str, "id": str}.',
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            CONTENT_TYPE: {"schema": {"type": "object", "required": ["image"]}},
        },
    }
}


@dataclass(frozen=True)
class ImageRequest:
    """What the route read, before any pixel is decoded."""

    image: bytes
    expected: ImageFormat | None  # the format the Content-Type named (None: from msgpack)
    tasks: list[str] | None
    bundle: str | None
    name: str | None
    request_id: str | None


class CloudEncoder:
    """The bundle's device half, run in the cloud: images -> quantized symbols (B, N, C)."""

    def __init__(self, served: Served, threads: int = 1) -> None:
        bundle = served.bundle
        self.manifest = bundle.manifest
        if not (bundle.bundle_dir / self.manifest.encoder_file).is_file():
            raise BundleError(
                f"{self.manifest.name} v{self.manifest.version} has no device half in the cloud "
                f"({bundle.bundle_dir / self.manifest.encoder_file} is missing); to serve images, "
                "copy the whole bundle directory, device/ included, to the server"
            )
        model = read_bytes_checked(bundle.bundle_dir, self.manifest, self.manifest.encoder_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def encode(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
        x = preprocess(images, self.manifest.input)  # (B, 3, H, W), exactly as the device does
        (z,) = self.session.run(None, {"image": x})  # (B, N, C) float32
        return quantize(z, self.manifest.representation.quant)


class _Encoders:
    """One ``CloudEncoder`` per served bundle, loaded on its first image and kept."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, int], CloudEncoder] = {}
        self._lock = threading.Lock()

    def get(self, served: Served, threads: int) -> CloudEncoder:
        manifest = served.bundle.manifest
        key = (str(served.bundle.bundle_dir), manifest.device_fingerprint, manifest.version)
        with self._lock:  # loads happen in worker threads; two first images load it once
            if key not in self._made:
                self._made[key] = CloudEncoder(served, threads)
            return self._made[key]


def _encoders(request: Request) -> _Encoders:
    state = request.app.state
    if not hasattr(state, "image_encoders"):
        state.image_encoders = _Encoders()
    encoders: _Encoders = state.image_encoders
    return encoders


def _served(plane: DataPlane, bundle: str | None, name: str | None) -> Served:
    if bundle:
        return plane.for_fingerprint(bundle)
    if name:
        return plane.get(name)
    names = sorted({n for n, _ in plane.models})
    if not names:
        raise BundleError("no bundle is loaded; load one before sending images")
    if len(names) > 1:
        raise ProtocolError(f"more than one bundle is served ({names}); name one with ?name= or ?bundle=")
    return plane.get(names[0])


def _optional_str(fields: dict[Any, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is not None and not (isinstance(value, str) and len(value) <= 128):
        raise ProtocolError(f"malformed image request: {key} must be a string of at most 128 characters")
    return value


def _read(request: Request, body: bytes, media: str) -> ImageRequest:
    query = request.query_params
    if media in IMAGE_CONTENT_TYPES:
        tasks = query.get("tasks")
        return ImageRequest(body, IMAGE_CONTENT_TYPES[media], tasks.split(",") if tasks else None,
                            query.get("bundle"), query.get("name"), query.get("id"))
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True, max_map_len=16, max_array_len=64)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
        raise ProtocolError(f"image request is not valid msgpack ({exc}); send a map with an image") from exc
    if not isinstance(fields, dict) or not isinstance(fields.get("image"), bytes):
        raise ProtocolError('an image request in msgpack is a map {"image": <PNG or JPEG bytes>, ...}')
    tasks = fields.get("tasks")
    if tasks is not None and not (isinstance(tasks, list) and all(isinstance(t, str) for t in tasks)):
        raise ProtocolError("malformed image request: tasks must be a list of task names")
    return ImageRequest(fields["image"], None, tasks, _optional_str(fields, "bundle"),
                        _optional_str(fields, "name"), _optional_str(fields, "id"))


image_router = APIRouter()


@image_router.post("/v1/predict/image", response_class=Response, dependencies=[inference_access],
                   responses={**PREDICT_OK, **errors(400, 401, 403, 404, 409, 413, 415, 422, 503)},
                   openapi_extra=_BODY)
async def predict_image(request: Request, plane: Plane, limits: RequestLimits) -> Response:
    """A PNG or JPEG image in (the bundle's encoder runs here), a msgpack PredictResponse out."""
    content_type = request.headers.get("content-type")
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in IMAGE_CONTENT_TYPES and media not in MSGPACK_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported here; send image/png or "
            f"image/jpeg, or a msgpack map with the image as {CONTENT_TYPE}"
        )
    body = await read_body(request, limits.max_body_bytes)
    # from here, as on the msgpack route: receiving the body is the link's time, not the server's,
    # and a client that estimates its bandwidth (mode="auto") subtracts this from its round trip
    started = time.perf_counter()
    asked = _read(request, body, media)
    served = _served(plane, asked.bundle, asked.name)
    tasks = served.bundle.resolve_tasks(asked.tasks)  # unknown tasks fail before any pixel is decoded
    encoders = _encoders(request)

    def encode() -> npt.NDArray[np.uint8]:
        rgb = decode_image(asked.image, asked.expected, IMAGE_MAX_PIXELS)
        return encoders.get(served, plane.settings.threads).encode([rgb])

    # Decoding an image and running the encoder take milliseconds of CPU: off the event loop,
    # so /healthz and the msgpack route keep answering meanwhile.
    encode_started = time.perf_counter()
    symbols = await asyncio.to_thread(encode)
    encode_ms = (time.perf_counter() - encode_started) * 1000
    outcome = await plane.infer_symbols(served, symbols, tasks)
    manifest = served.bundle.manifest
    answer = PredictResponse(
        id=asked.request_id,
        bundle=manifest.device_fingerprint,
        version=manifest.version,
        predictions={task: to_predictions(manifest.task(task), out) for task, out in outcome.outputs.items()},
        answered_by="cloud",
        timing=Timing(queue_ms=outcome.queue_ms, decode_ms=encode_ms, compute_ms=outcome.compute_ms,
                      total_ms=(time.perf_counter() - started) * 1000),
    )
    return Response(pack_response(answer), media_type=CONTENT_TYPE,
                    headers={ENCODER_HEADER: "cloud", DECODERS_HEADER: "cloud"})
