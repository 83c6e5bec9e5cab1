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
(all when absent). Every length is bounded before anything is allocated. The server
accepts both request versions; the device client sends v2.

v2 (compact, the default): a msgpack array, by position::

    [2, bundle, codec, shape, data, tasks, id, quant]
     0  bin 8   int    [B,N,C] bin  [str]  str [bits, scale, zero_point]

    bundle  the first 8 bytes of the device fingerprint (``bundle_id``); the request
            model holds them as 16 hex digits, and the server matches them against the
            fingerprints it serves (a mismatch answers 409 with the full fingerprint)
    codec   the codec's stable number, ``shared.manifest.CODEC_IDS`` (rans-lanes = 3)
    tasks, id, quant   optional; leave trailing ones out, or send nil for a gap. The
            quantization is the bundle's unless sent; when sent, the server checks it

A request costs 19 bytes of framing around its payload (v1: 166), tasks and id aside.

v1 (still accepted): a msgpack map ``{"v": 1, "bundle": <64 hex fingerprint>, "rep":
{"codec", "shape", "dtype", "bits", "scale", "zero_point", "data"}, "tasks", "id"}``.

Responses are unchanged: a map as ``PredictResponse`` dumps it, ``v`` 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType
from shared.manifest import CODEC_IDS

__all__ = [
    "BUNDLE_ID_BYTES",
    "CONTENT_TYPE",
    "MSGPACK_CONTENT_TYPES",
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSIONS",
    "RESPONSE_VERSION",
    "Classification",
    "Dense",
    "Image",
    "Limits",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "Regression",
    "Representation",
    "Timing",
    "bundle_id",
    "check_content_type",
    "fingerprint_matches",
    "pack",
    "pack_request",
    "pack_response",
    "unpack_request",
    "unpack_response",
]

PROTOCOL_VERSION = 2
"""The request version this module packs by default (and the device client sends)."""
PROTOCOL_VERSIONS = frozenset({1, 2})
"""Request versions ``unpack_request`` accepts."""
RESPONSE_VERSION = 1
"""Responses keep their v1 form, so that every client reads them."""
BUNDLE_ID_BYTES = 8
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
    bits: int | None = None
    scale: float | None = None
    zero_point: int | None = None
    """The quantization: v1 always sends it; v2 only when asked (None: the bundle's)."""
    data: bytes


class PredictRequest(_Message):
    v: int
    bundle: str = Field(max_length=64)
    """Device fingerprint of the bundle that produced the representation: all 64 hex digits
    (v1) or the first 16 (v2); see ``fingerprint_matches``."""
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


class Image(_Message):
    """An RGB picture, row-major (H, W, 3) uint8: what the cloud can see of the input."""

    kind: Literal["image"] = "image"
    shape: tuple[int, int, int]
    data: bytes


Prediction = Annotated[Classification | Regression | Dense | Image, Field(discriminator="kind")]


class Timing(_Message):
    queue_ms: float = 0.0
    decode_ms: float = 0.0
    compute_ms: float = 0.0
    total_ms: float = 0.0


class PredictResponse(_Message):
    v: int = RESPONSE_VERSION
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


def bundle_id(fingerprint: str) -> bytes:
    """The 8 bytes that name a bundle in a v2 request: the start of its device fingerprint."""
    try:
        raw = bytes.fromhex(fingerprint[: 2 * BUNDLE_ID_BYTES])
    except ValueError:
        raw = b""
    if len(raw) != BUNDLE_ID_BYTES:
        raise ProtocolError(
            f"bundle {fingerprint!r} is not a device fingerprint (hex, at least 16 digits); "
            "pass the manifest's device_fingerprint"
        )
    return raw


def fingerprint_matches(bundle: str, fingerprint: str) -> bool:
    """Whether a request's ``bundle`` names ``fingerprint``: all 64 hex digits, or a prefix of
    at least 16 (v2 sends exactly 16)."""
    return len(bundle) >= 2 * BUNDLE_ID_BYTES and fingerprint.startswith(bundle)


def pack_request(request: PredictRequest) -> bytes:
    """v1 as the map above; v2 as the array, taking the bundle id from the fingerprint given."""
    rep = request.rep
    quant = (rep.bits, rep.scale, rep.zero_point)
    if request.v == 1:
        if None in quant:
            raise ProtocolError("a v1 request carries its quantization: set bits, scale and zero_point, or send v2")
        return pack(request)
    if request.v != 2:
        raise ProtocolError(f"cannot pack protocol version {request.v}; use one of {sorted(PROTOCOL_VERSIONS)}")
    codec = CODEC_IDS.get(rep.codec)
    if codec is None:
        raise ProtocolError(f"codec {rep.codec!r} has no v2 number; known: {sorted(CODEC_IDS)}")
    fields: list[Any] = [2, bundle_id(request.bundle), codec, list(rep.shape), rep.data, request.tasks, request.id]
    if quant != (None, None, None):
        if None in quant:
            raise ProtocolError("send all of bits, scale and zero_point, or none of them")
        fields.append(list(quant))
    while fields[-1] is None:
        fields.pop()
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


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
    """Decode and validate a request body, v1 or v2; every failure is a ``ProtocolError`` that says why."""
    fields = _unpack(body, limits, "request body")
    if isinstance(fields, list):
        request = _from_v2(fields)
    elif isinstance(fields, dict):
        request = _from_v1(fields)
    else:
        raise ProtocolError(
            "request body must be a msgpack array [2, bundle, codec, shape, data, ...] (v2) or a map "
            "with keys v, bundle, rep, tasks, id (v1)"
        )
    batch = request.rep.shape[0]
    if not 1 <= batch <= limits.max_batch:
        raise ProtocolError(f"batch of {batch} samples is outside 1..{limits.max_batch}; split the batch")
    if request.tasks is not None and len(request.tasks) > limits.max_tasks:
        raise ProtocolError(f"{len(request.tasks)} tasks asked, at most {limits.max_tasks} per request")
    return request


def _unsupported(version: object) -> ProtocolError:
    return ProtocolError(
        f"protocol version {version!r} is not supported; this server speaks "
        f"v={sorted(PROTOCOL_VERSIONS)}, update the device client"
    )


def _validated(fields: dict[str, Any]) -> PredictRequest:
    try:
        return PredictRequest.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(f"malformed request: {_validation_message(exc)}") from exc


def _from_v1(fields: dict[Any, Any]) -> PredictRequest:
    if fields.get("v") != 1:
        if fields.get("v") == 2:
            raise ProtocolError("a v2 request is a msgpack array [2, bundle, codec, shape, data, ...], not a map")
        raise _unsupported(fields.get("v"))
    request = _validated(fields)
    rep = request.rep
    missing = [key for key, value in (("bits", rep.bits), ("scale", rep.scale), ("zero_point", rep.zero_point))
               if value is None]
    if missing:
        raise ProtocolError(f"malformed request: rep.{missing[0]}: a v1 request must send it")
    return request


_V2_FIELDS = ("v", "bundle", "codec", "shape", "data", "tasks", "id", "quant")


def _from_v2(fields: list[Any]) -> PredictRequest:
    if not fields or fields[0] != 2:
        raise _unsupported(fields[0] if fields else None)
    if not 5 <= len(fields) <= len(_V2_FIELDS):
        raise ProtocolError(
            f"a v2 request has 5 to {len(_V2_FIELDS)} fields ({', '.join(_V2_FIELDS)}), got {len(fields)}"
        )
    padded: list[Any] = fields + [None] * (len(_V2_FIELDS) - len(fields))
    v, bundle, codec, shape, data, tasks, request_id, quant = padded
    if not isinstance(bundle, bytes) or len(bundle) != BUNDLE_ID_BYTES:
        raise ProtocolError(
            f"malformed request: bundle: must be the {BUNDLE_ID_BYTES}-byte bundle id (bin), got {bundle!r:.40}"
        )
    names = {number: name for name, number in CODEC_IDS.items()}
    if isinstance(codec, bool) or not isinstance(codec, int) or codec not in names:
        raise ProtocolError(f"malformed request: codec: {codec!r} is not a codec number; known: {names}")
    rep: dict[str, Any] = {"codec": names[codec], "shape": shape, "data": data}
    if quant is not None:
        if not isinstance(quant, list) or len(quant) != 3:
            raise ProtocolError("malformed request: quant: must be [bits, scale, zero_point] or absent")
        rep.update(zip(("bits", "scale", "zero_point"), quant))
    return _validated({"v": v, "bundle": bundle.hex(), "rep": rep, "tasks": tasks, "id": request_id})


def unpack_response(body: bytes, limits: Limits = Limits()) -> PredictResponse:
    fields = _unpack(body, limits, "response body")
    try:
        return PredictResponse.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(f"malformed response: {_validation_message(exc)}") from exc
