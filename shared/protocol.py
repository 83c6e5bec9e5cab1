"""Wire protocol between device and cloud: versioned msgpack, never pickle.

::

    device                                         cloud
    image ─► encoder.onnx ─► z (B,N,C) float32
             quantize ─► symbols (B,N,C) uint8
             codec.encode ─► bytes ─► PredictRequest ──HTTP POST /v1/predict──►
                                       unpack_request (bounded) ─► codec.decode
                                       dequantize ─► decoder[task].onnx ─► outputs
    predictions ◄── unpack_response ◄──────── PredictResponse ◄──┘

A request carries one representation for a batch of B samples and the tasks wanted
(all when absent). Every length is bounded before anything is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType

__all__ = [
    "CONTENT_TYPE",
    "MSGPACK_CONTENT_TYPES",
    "PROTOCOL_VERSION",
    "Classification",
    "Dense",
    "Limits",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "Regression",
    "Representation",
    "Timing",
    "check_content_type",
    "pack",
    "pack_request",
    "pack_response",
    "unpack_request",
    "unpack_response",
]

PROTOCOL_VERSION = 1
CONTENT_TYPE = "application/vnd.msgpack"
MSGPACK_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/x-msgpack", "application/msgpack"})


@dataclass(frozen=True)
class Limits:
    """Upper bounds applied while unpacking, before any work is queued."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 256
    max_tasks: int = 64
    max_string: int = 256


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Representation(_Message):
    """Coded symbols of B samples, as the bundle's codec wrote them."""

    codec: str = Field(max_length=32)
    shape: tuple[int, int, int]
    """(B, N, C): batch, tokens, channels."""
    dtype: Literal["uint8"] = "uint8"
    bits: int
    scale: float
    zero_point: int
    data: bytes


class PredictRequest(_Message):
    v: int
    bundle: str = Field(max_length=64)
    """Device fingerprint of the bundle that produced the representation."""
    rep: Representation
    tasks: list[Annotated[str, Field(max_length=32)]] | None = None
    id: Annotated[str, Field(max_length=128)] | None = None


class Classification(_Message):
    kind: Literal["classification"] = "classification"
    label: str
    index: int
    score: float


class Regression(_Message):
    kind: Literal["regression"] = "regression"
    values: list[float]


class Dense(_Message):
    """A per-pixel class map, row-major uint8."""

    kind: Literal["dense"] = "dense"
    shape: tuple[int, int]
    data: bytes


Prediction = Annotated[Classification | Regression | Dense, Field(discriminator="kind")]


class Timing(_Message):
    queue_ms: float = 0.0
    decode_ms: float = 0.0
    compute_ms: float = 0.0
    total_ms: float = 0.0


class PredictResponse(_Message):
    v: int = PROTOCOL_VERSION
    id: str | None = None
    bundle: str
    """Device fingerprint of the bundle that answered."""
    version: int
    """Version of the bundle that answered."""
    predictions: dict[str, list[Prediction]]
    """Task name -> one prediction per sample."""
    answered_by: Literal["cloud", "device"] = "cloud"
    timing: Timing = Timing()


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in MSGPACK_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported; "
            f"send the body as msgpack with Content-Type: {CONTENT_TYPE}"
        )


def pack(message: BaseModel) -> bytes:
    packed: bytes = msgpack.packb(message.model_dump(mode="python"), use_bin_type=True)
    return packed


def pack_request(request: PredictRequest) -> bytes:
    return pack(request)


def pack_response(response: PredictResponse) -> bytes:
    return pack(response)


def _unpack(body: bytes, limits: Limits, what: str) -> Any:
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(
            f"{what} is {len(body)} bytes, the limit is {limits.max_body_bytes}; "
            "send fewer samples per request"
        )
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_bin_len=limits.max_body_bytes,
            max_str_len=limits.max_string * 4,
            max_array_len=max(limits.max_tasks, limits.max_batch, 16),
            max_map_len=max(limits.max_tasks, 16),
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
        raise ProtocolError(f"{what} is not valid msgpack ({exc}); encode it with msgpack.packb") from exc


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def unpack_request(body: bytes, limits: Limits = Limits()) -> PredictRequest:
    """Decode and validate a request body; every failure is a ``ProtocolError`` that says why."""
    fields = _unpack(body, limits, "request body")
    if not isinstance(fields, dict):
        raise ProtocolError("request body must be a msgpack map with keys v, bundle, rep, tasks, id")
    if fields.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {fields.get('v')!r} is not supported; this server speaks "
            f"v={PROTOCOL_VERSION}, update the device client"
        )
    try:
        request = PredictRequest.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(f"malformed request: {_validation_message(exc)}") from exc
    batch = request.rep.shape[0]
    if not 1 <= batch <= limits.max_batch:
        raise ProtocolError(f"batch of {batch} samples is outside 1..{limits.max_batch}; split the batch")
    if request.tasks is not None and len(request.tasks) > limits.max_tasks:
        raise ProtocolError(f"{len(request.tasks)} tasks asked, at most {limits.max_tasks} per request")
    return request


def unpack_response(body: bytes, limits: Limits = Limits()) -> PredictResponse:
    fields = _unpack(body, limits, "response body")
    try:
        return PredictResponse.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(f"malformed response: {_validation_message(exc)}") from exc
