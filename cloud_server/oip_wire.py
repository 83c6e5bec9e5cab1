"""Open Inference Protocol v2 bodies: reading an infer request, writing its answer.

A model is a bundle. Its one input, ``representation``, is the quantized symbols
(UINT8, [B, N, C]) that ``DeviceEncoder.encode(...).symbols`` gives, before any entropy
coding; its outputs are its tasks, each the decoder's raw FP32 tensor [B, *output_shape].
An infer body comes in one of three encodings::

    JSON           tensor "data" as a flat (row-major) or nested list
    JSON + binary  Triton's binary tensor data extension: the JSON header, then the raw
                   tensor bytes; the Inference-Header-Content-Length header says where
                   the JSON ends, an input's parameters.binary_data_size how many bytes
                   are its own
    msgpack        Content-Type application/vnd.msgpack: the JSON structure, tensor
                   "data" as raw little-endian bytes

A msgpack request is answered in msgpack. Otherwise an output goes back as binary data
when it asks (``parameters.binary_data``, default: the request's
``parameters.binary_data_output``), else as a JSON list. Request bodies may be gzip or
deflate compressed (Content-Encoding); inflating them is bounded by the body limit.
Nothing here knows HTTP routes or the data plane: the routes are in ``oip.py``.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
from fastapi.responses import Response

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType
from shared.manifest import Manifest
from shared.protocol import CONTENT_TYPE, MSGPACK_CONTENT_TYPES, Limits

__all__ = [
    "HEADER_LENGTH",
    "INPUT_NAME",
    "InferRequest",
    "RequestedOutput",
    "encode_response",
    "input_shape",
    "parse_request",
    "read_request",
]

INPUT_NAME = "representation"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class RequestedOutput:
    name: str  # a task of the bundle
    binary: bool  # answer as binary tensor data rather than a JSON list


@dataclass(frozen=True)
class InferRequest:
    """An infer request after every check: what goes to the data plane."""

    id: str | None
    symbols: npt.NDArray[np.uint8]  # (B, N, C)
    outputs: list[RequestedOutput] | None  # None: every task
    binary_output: bool  # the request-level default for outputs not named


# ---------------------------------------------------------------- reading a request


def _inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone, refused as soon as it passes ``limit``."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or an uncompressed body"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(
            f"body is not valid {encoding} data ({exc}); compress it again or send it plain"
        ) from exc
    if len(plain) > limit:
        raise PayloadTooLarge(f"inflated body is over the {limit}-byte limit; send fewer samples per request")
    if not inflater.eof:
        raise ProtocolError(f"{encoding} body ends early; send the whole compressed stream")
    return plain


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a body, split where the header says."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isascii() or not header_length.strip().isdigit():
        raise ProtocolError(
            f"{HEADER_LENGTH} is {header_length!r}; set it to the byte length of the JSON header"
        )
    length = int(header_length)
    if not 0 < length <= len(body):
        raise ProtocolError(
            f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes; "
            "set it to the byte length of the JSON header that starts the body"
        )
    return body[:length], body[length:]


def _load_json(header: bytes) -> Any:
    try:
        return json.loads(header)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            f"infer request is not valid JSON ({str(exc)[:200]}); send a JSON object with 'inputs' "
            f"(with binary tensor data, set {HEADER_LENGTH} to the JSON length)"
        ) from exc


def _load_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, max_ext_len=0)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
        raise ProtocolError(
            f"infer request is not valid msgpack ({type(exc).__name__}: {exc}); "
            "encode the OIP request map with msgpack.packb"
        ) from exc


def _field(fields: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``fields[key]`` (None when absent), checked to be of ``kind``."""
    value = fields.get(key)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProtocolError(f"{where}.{key} must be {names}, got {type(value).__name__}; see the OIP v2 spec")
    return value


def _symbols_from_list(values: list[Any], shape: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    expected = math.prod(shape)
    try:
        array = np.array(values)
    except (ValueError, OverflowError) as exc:
        raise ProtocolError(
            f"input '{INPUT_NAME}' data is neither a flat list nor a regular nested list ({exc}); "
            f"send {expected} integers 0..255 in row-major order"
        ) from exc
    if array.size != expected:
        raise ProtocolError(
            f"expected {expected} values for shape {list(shape)} UINT8, got {array.size}; "
            "make data hold exactly prod(shape) symbols"
        )
    if array.ndim != 1 and array.shape != shape:
        raise ProtocolError(
            f"nested data has shape {list(array.shape)} but the input says {list(shape)}; "
            "nest it as the shape says or send a flat list"
        )
    if array.size and (array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255):
        raise ProtocolError(f"input '{INPUT_NAME}' data must be integers 0..255 (UINT8 symbols)")
    return array.astype(np.uint8).reshape(shape)


def _symbols_from_bytes(raw: bytes, shape: tuple[int, int, int], how: str) -> npt.NDArray[np.uint8]:
    expected = math.prod(shape)
    if len(raw) != expected:
        raise ProtocolError(
            f"expected {expected} bytes for shape {list(shape)} UINT8, got {len(raw)} ({how}); "
            "send exactly prod(shape) bytes, one symbol per byte"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def input_shape(manifest: Manifest) -> list[int]:
    """The input tensor's shape for model metadata: [-1, N, C]; a text bundle's N varies: -1."""
    n, c = manifest.representation.shape
    return [-1, -1 if manifest.is_text else n, c]


def _shape(value: Any, manifest: Manifest, limits: Limits) -> tuple[int, int, int]:
    n, c = manifest.representation.shape
    want = f"[B, {n}, {c}] with 1 <= B <= {limits.max_batch}"
    if manifest.is_text:  # one text's T real tokens, every one of them real
        want = f"[B, T, {c}] with 1 <= T <= {n} tokens and 1 <= B <= {limits.max_batch}"
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    ):
        raise ProtocolError(f"input '{INPUT_NAME}' shape must be a list of 3 integers {want}, got {value!r}")
    batch, tokens, channels = value
    fits = 1 <= tokens <= n if manifest.is_text else tokens == n
    if not fits or channels != c or not 1 <= batch <= limits.max_batch:
        raise ProtocolError(
            f"input '{INPUT_NAME}' shape {value} does not fit: expected {want}; "
            "send the symbols DeviceEncoder.encode(...).symbols gives, split into smaller batches if needed"
        )
    return batch, tokens, channels


def _symbols(tensor: Any, tensors: bytes, manifest: Manifest, limits: Limits) -> npt.NDArray[np.uint8]:
    """The one input, checked: name, datatype, shape and exactly prod(shape) bytes of data."""
    n, c = manifest.representation.shape
    if not isinstance(tensor, dict):
        raise ProtocolError(
            f"each input must be an object with name, datatype, shape, data; got {tensor!r:.80}"
        )
    if tensor.get("name") != INPUT_NAME:
        raise ProtocolError(
            f"input {tensor.get('name')!r} is not known; this model takes one input, "
            f"'{INPUT_NAME}' (UINT8 [B, {n}, {c}])"
        )
    if tensor.get("datatype") != "UINT8":
        raise ProtocolError(
            f"input '{INPUT_NAME}' has datatype {tensor.get('datatype')!r}; send the quantized "
            f"symbols as UINT8 [B, {n}, {c}], not the float bottleneck"
        )
    shape = _shape(tensor.get("shape"), manifest, limits)
    parameters = _field(tensor, "parameters", dict, "inputs[0]") or {}
    if "shared_memory_region" in parameters:
        raise ProtocolError("shared memory inputs are not supported; send the tensor in the body")
    size = _field(parameters, "binary_data_size", int, "inputs[0].parameters")
    data = tensor.get("data")
    if size is not None:
        if data is not None:
            raise ProtocolError(f"input '{INPUT_NAME}' has both data and binary_data_size; send one of them")
        if size != len(tensors):
            raise ProtocolError(
                f"binary_data_size is {size} but {len(tensors)} bytes of binary tensor data follow the "
                f"JSON header; make them agree and check {HEADER_LENGTH} (msgpack carries data in 'data')"
            )
        return _symbols_from_bytes(tensors, shape, "binary tensor data")
    if tensors:
        raise ProtocolError(
            f"{len(tensors)} bytes follow the JSON header but the input has no binary_data_size; "
            "set parameters.binary_data_size to their length"
        )
    if isinstance(data, bytes):
        return _symbols_from_bytes(data, shape, "data bytes")
    if isinstance(data, list):
        return _symbols_from_list(data, shape)
    found = "no data" if data is None else f"data of type {type(data).__name__}"
    raise ProtocolError(
        f"input '{INPUT_NAME}' has {found}; put the symbols in 'data' (a list, or bytes in msgpack) "
        "or send them as binary tensor data with parameters.binary_data_size"
    )


def _outputs(value: Any, binary_output: bool, limits: Limits) -> list[RequestedOutput] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) > limits.max_tasks:
        raise ProtocolError(f"outputs must be a list of at most {limits.max_tasks} objects with a task name")
    requested: list[RequestedOutput] = []
    for i, output in enumerate(value):
        where = f"outputs[{i}]"
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise ProtocolError(f"{where} must be an object with a 'name' (a task); got {output!r:.80}")
        parameters = _field(output, "parameters", dict, where) or {}
        if parameters.get("classification"):
            raise ProtocolError(
                "the classification extension is not supported; ask for the raw FP32 logits and take argmax"
            )
        if "shared_memory_region" in parameters:
            raise ProtocolError("shared memory outputs are not supported; take the output in the body")
        binary = _field(parameters, "binary_data", bool, f"{where}.parameters")
        requested.append(RequestedOutput(output["name"], binary_output if binary is None else binary))
    names = [output.name for output in requested]
    if len(set(names)) != len(names):
        raise ProtocolError(f"outputs name a task twice ({names}); name each at most once")
    return requested


def parse_request(message: Any, tensors: bytes, manifest: Manifest, limits: Limits) -> InferRequest:
    """Check a decoded OIP infer request against a bundle; ``tensors`` is the binary tail."""
    if not isinstance(message, dict):
        raise ProtocolError(f"infer request must be an object with 'inputs', got {type(message).__name__}")
    request_id = _field(message, "id", str, "request")
    if request_id is not None and len(request_id) > limits.max_string:
        raise ProtocolError(
            f"request id is {len(request_id)} characters, at most {limits.max_string} allowed"
        )
    parameters = _field(message, "parameters", dict, "request") or {}
    binary_output = bool(_field(parameters, "binary_data_output", bool, "request.parameters"))
    inputs = _field(message, "inputs", list, "request")
    if not inputs or len(inputs) != 1:
        raise ProtocolError(f"send exactly one input, '{INPUT_NAME}'; got {len(inputs or [])}")
    symbols = _symbols(inputs[0], tensors, manifest, limits)
    outputs = _outputs(message.get("outputs"), binary_output, limits)
    return InferRequest(request_id, symbols, outputs, binary_output)


def read_request(
    body: bytes, headers: Mapping[str, str], manifest: Manifest, limits: Limits
) -> tuple[InferRequest, bool]:
    """The checked request in a body, and whether it came (and goes back) as msgpack."""
    body = _inflate(body, headers.get("content-encoding"), limits.max_body_bytes)
    as_msgpack = headers.get("content-type", "").split(";")[0].strip().lower() in MSGPACK_CONTENT_TYPES
    if as_msgpack:
        message, tensors = _load_msgpack(body), b""
    else:  # like Triton, anything else is JSON, with binary tensor data when the header says so
        header, tensors = _split(body, headers.get(HEADER_LENGTH))
        message = _load_json(header)
    return parse_request(message, tensors, manifest, limits), as_msgpack


# ---------------------------------------------------------------- writing the answer


def _little_endian(output: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(output, dtype="<f4").tobytes()


def encode_response(
    manifest: Manifest, request: InferRequest, outputs: dict[str, npt.NDArray[np.float32]], as_msgpack: bool
) -> Response:
    """The OIP answer of ``manifest``'s bundle: msgpack, JSON, or a JSON header followed by binary
    tensor data."""
    binary = {o.name: o.binary for o in request.outputs} if request.outputs else {}
    answer: dict[str, Any] = {"model_name": manifest.name, "model_version": str(manifest.version)}
    if request.id is not None:
        answer["id"] = request.id
    tensors: list[bytes] = []
    entries: list[dict[str, Any]] = []
    for task, output in outputs.items():  # (B, *output_shape) each
        entry: dict[str, Any] = {"name": task, "datatype": "FP32", "shape": list(output.shape)}
        if as_msgpack:
            entry["data"] = _little_endian(output)
        elif binary.get(task, request.binary_output):
            tensors.append(_little_endian(output))
            entry["parameters"] = {"binary_data_size": len(tensors[-1])}
        else:
            entry["data"] = output.ravel().tolist()
        entries.append(entry)
    answer["outputs"] = entries
    if as_msgpack:
        return Response(msgpack.packb(answer, use_bin_type=True), media_type=CONTENT_TYPE)
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not tensors:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(tensors),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )
