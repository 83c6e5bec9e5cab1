"""Open Inference Protocol v2 (KServe / Triton REST) routes over the data plane.

A stock ``tritonclient.http.InferenceServerClient`` works against these routes::

    GET  /v2                                        server metadata          (no key)
    GET  /v2/health/live   /v2/health/ready         200, or 400 when not ready (no key)
    GET  /v2/models/{name}[/versions/{v}]           model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready     200 when loaded
    POST /v2/models/{name}[/versions/{v}]/infer     symbols in, raw decoder outputs out

What a model's input and outputs are, and the three body encodings (JSON, JSON + binary
tensor data, msgpack), are in ``oip_wire.py``, which reads and writes the bodies.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cloud_server.dataplane import DataPlane, Served
from cloud_server.deps import AppMetrics, Plane, RequestLimits, inference_access, read_body
from cloud_server.errors import ErrorMessageRoute
from cloud_server.metrics import Metrics
from cloud_server.oip_wire import (
    HEADER_LENGTH,
    INPUT_NAME,
    InferRequest,
    RequestedOutput,
    encode_response,
    input_shape,
    parse_request,
    read_request,
)
from cloud_server.openapi import INFER_BODY, INFER_ERRORS, INFER_OK, MODEL_ERRORS, NOT_READY
from shared.errors import ProtocolError
from shared.protocol import Limits

__all__ = [
    "HEADER_LENGTH",
    "INPUT_NAME",
    "InferRequest",
    "RequestedOutput",
    "encode_response",
    "oip_public_router",
    "oip_router",
    "parse_request",
]

SERVER_NAME = "device-tuning"
EXTENSIONS = ["binary_tensor_data"]
_VERSION = re.compile(r"[1-9][0-9]{0,8}")
_INLINE_LIMIT = 64 * 1024  # body bytes in, or output values out, past which (de)serializing leaves the loop

# Errors on these routes carry their message in "error", the one field OIP clients show.
oip_public_router = APIRouter(route_class=ErrorMessageRoute)
"""Health and server metadata: no key, like the other probes."""
oip_router = APIRouter(route_class=ErrorMessageRoute, dependencies=[inference_access])
"""Models and inference: an inference key."""


def _served(plane: DataPlane, name: str, version: str | None) -> Served:
    if version is not None and not _VERSION.fullmatch(version):
        raise ProtocolError(
            f"model version {version!r} is not a positive integer; use one that GET /v2/models/{name} lists"
        )
    return plane.get(name, None if version is None else int(version))


def _metadata(plane: DataPlane, name: str, version: str | None) -> dict[str, Any]:
    manifest = _served(plane, name, version).bundle.manifest
    metadata: dict[str, Any] = {
        "name": manifest.name,
        "versions": [str(v) for (model, v) in sorted(plane.models) if model == manifest.name],
        "platform": "onnxruntime",
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": input_shape(manifest)}],
        "outputs": [
            {"name": task.name, "datatype": "FP32", "shape": [-1, *task.output_shape]}
            for task in manifest.tasks
        ],
    }
    if manifest.trunk is not None:  # what the heads on it share: one pass per batch
        metadata["parameters"] = {"trunk": {"file": manifest.trunk.file, "features": manifest.trunk.features,
                                            "heads": [t.name for t in manifest.tasks if t.source == "trunk"]}}
    return metadata


async def _parse(request: Request, body: bytes, served: Served, limits: Limits) -> tuple[InferRequest, bool]:
    # JSON lists cost about a microsecond a value (75 ms for 64 masks): big ones are
    # (de)serialized in a thread so that the event loop keeps feeding the batcher.
    args = (body, request.headers, served.bundle.manifest, limits)
    if len(body) > _INLINE_LIMIT or "content-encoding" in request.headers:
        return await asyncio.to_thread(read_request, *args)
    return read_request(*args)


async def _infer(
    request: Request, plane: DataPlane, limits: Limits, metrics: Metrics, name: str, version: str | None
) -> Response:
    body = await read_body(request, limits.max_body_bytes)
    metrics.received.labels("/v2/infer").inc(len(body))
    served = _served(plane, name, version)  # 404 before parsing; the body is checked against it
    with served.batcher.expecting():
        parsed, as_msgpack = await _parse(request, body, served, limits)
    # Parsing may have left the loop: the version can have been swapped or unloaded
    # meanwhile. Resolve it again, so that the request goes to the batcher serving now.
    current = _served(plane, name, version)
    if current.bundle.manifest.representation != served.bundle.manifest.representation:
        parsed, as_msgpack = await _parse(request, body, current, limits)
    tasks = [output.name for output in parsed.outputs] if parsed.outputs else None
    outcome = await plane.infer_symbols(current, parsed.symbols, tasks)
    manifest = current.bundle.manifest
    if sum(output.size for output in outcome.outputs.values()) > _INLINE_LIMIT:
        return await asyncio.to_thread(encode_response, manifest, parsed, outcome.outputs, as_msgpack)
    return encode_response(manifest, parsed, outcome.outputs, as_msgpack)


@oip_public_router.get("/v2")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@oip_public_router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@oip_public_router.get("/v2/health/ready", responses=NOT_READY)
async def ready(plane: Plane) -> JSONResponse:
    """200 when a bundle is loaded and warm; 400 otherwise, as Triton answers (the spec says 4xx)."""
    if plane.ready:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False, "models": plane.list_keys()}, status_code=400)


@oip_router.get("/v2/models/{name}", responses=MODEL_ERRORS)
async def model_metadata(plane: Plane, name: str) -> dict[str, Any]:
    return _metadata(plane, name, None)


@oip_router.get("/v2/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(plane: Plane, name: str, version: str) -> dict[str, Any]:
    return _metadata(plane, name, version)


@oip_router.get("/v2/models/{name}/ready", responses=MODEL_ERRORS)
async def model_ready(plane: Plane, name: str) -> dict[str, Any]:
    """200 when loaded; a model that is not gets 404 with the loaded ones listed."""
    _served(plane, name, None)
    return {"name": name, "ready": True}


@oip_router.get("/v2/models/{name}/versions/{version}/ready", responses=MODEL_ERRORS)
async def model_version_ready(plane: Plane, name: str, version: str) -> dict[str, Any]:
    _served(plane, name, version)
    return {"name": name, "version": version, "ready": True}


@oip_router.post("/v2/models/{name}/infer", response_class=Response, responses={**INFER_OK, **INFER_ERRORS},
                  openapi_extra=INFER_BODY)
async def infer(
    request: Request, plane: Plane, limits: RequestLimits, metrics: AppMetrics, name: str
) -> Response:
    return await _infer(request, plane, limits, metrics, name, None)


@oip_router.post("/v2/models/{name}/versions/{version}/infer", response_class=Response, responses={**INFER_OK, **INFER_ERRORS},
                  openapi_extra=INFER_BODY)
async def infer_version(
    request: Request, plane: Plane, limits: RequestLimits, metrics: AppMetrics, name: str, version: str
) -> Response:
    return await _infer(request, plane, limits, metrics, name, version)
