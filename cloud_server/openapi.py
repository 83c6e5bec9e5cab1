"""What /openapi.json says about each route: the bodies it really reads, the statuses and content
types it really answers with. Routes pass these as ``responses=`` and ``openapi_extra=``.

The msgpack and OIP bodies are read by hand (``read_body``), so FastAPI cannot see them;
they are declared here. A msgpack body is described by the structure it unpacks to; the
checks inside it that a schema cannot state (the payload's length matches its shape, the
fingerprint names a loaded device half) answer 400 or 409 and are listed with it.
tests/cloud_server/test_openapi.py runs schemathesis with every check against a real server.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST

from shared.protocol import CONTENT_TYPE

__all__ = [
    "ADMIN_ERRORS", "ADMIN_LOAD_BODY", "INFER_BODY", "INFER_ERRORS", "INFER_OK", "METRICS_OK",
    "MODEL_ERRORS", "NOT_READY", "PREDICT_BODY", "PREDICT_ERRORS", "PREDICT_OK", "READY_ERRORS", "errors", "install_openapi",
]

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "the kind (snake_case); on /v2 routes 'kind: message'"},
        "detail": {"description": "what was wrong and what to do"},
        "expected": {"type": "string", "description": "409: the fingerprints loaded"},
        "known": {"type": "array", "items": {"type": "string"}, "description": "404 unknown_task: the tasks served"},
    },
}

_WHY = {
    400: "Malformed request: the body, a parameter or a field is not what the route reads.",
    401: "No bearer token, where auth is on.",
    403: "A key of the wrong kind (an inference key on /admin).",
    404: "The model, version, task or bundle path is not loaded or not found.",
    409: "The payload was made by a device half no loaded bundle accepts.",
    413: "The body is over the size limit.",
    415: "The Content-Type is not one the route reads.",
    422: "A bundle whose files do not match their sha256, or a path parameter of the wrong type.",
    503: "Overloaded, or the version is stopping: retry after Retry-After seconds.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error statuses a route answers, with the error body."""
    described: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _WHY[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        described[status] = entry
    return described


_AUTH = (401, 403)
MODEL_ERRORS = errors(400, *_AUTH, 404)
"""GET /v2/models/...: a version that is not a positive integer is 400, an unknown one 404."""
ADMIN_ERRORS = errors(*_AUTH, 404, 422)
READY_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"description": "Not ready: no bundle loaded, shutting down, or a batcher worker died.",
          "content": {"application/json": {"schema": {"type": "object", "properties": {
              "status": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}}}}}}}
}
NOT_READY: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not ready (as Triton answers): no bundle loaded, shutting down, or a worker died.",
          "content": {"application/json": {"schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}
}
PREDICT_ERRORS = errors(400, *_AUTH, 404, 409, 413, 415, 503)
INFER_ERRORS = errors(400, *_AUTH, 404, 409, 413, 503)

_BINARY = {"type": "string", "format": "binary"}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_PARAMETERS = {"type": "object", "additionalProperties": {"type": ["string", "boolean"]},
               "properties": {"binary_data_size": _COUNT}}
_HEX = "^[0-9a-f]{16,64}$"

# A PredictRequest (shared/protocol.py) as protocol v1 packs it: a msgpack map.
_PREDICT = {
    "type": "object",
    "required": ["v", "id", "bundle", "rep"],
    "properties": {
        "v": {"type": "integer", "enum": [1]},
        "id": {"type": "string"},
        "bundle": {"type": "string", "pattern": _HEX, "description": "the device fingerprint, or its first 16+ hex digits"},
        "tasks": {"type": "array", "items": {"type": "string"}},
        "rep": {
            "type": "object",
            "description": "the coded representation: codec name, shape, payload bytes (a msgpack bin)",
            "required": ["codec", "shape", "payload"],
            "properties": {
                "codec": {"type": "string"},
                "shape": {"type": "array", "items": {**_COUNT, "minimum": 1}},
                "payload": _BINARY,
            },
        },
    },
}

PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A msgpack PredictRequest (`DeviceClient` builds it). Its payload must match the "
        "device half named by `bundle`: otherwise 409 (no such device half) or 400 (payload).",
        "content": {CONTENT_TYPE: {"schema": _PREDICT}},
    }
}
PREDICT_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "A msgpack PredictResponse.", "content": {CONTENT_TYPE: {"schema": _BINARY}}}
}

_INFER = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string", "enum": ["representation"]},
                    "datatype": {"type": "string", "enum": ["UINT8"]},
                    "shape": {"type": "array", "items": _COUNT, "description": "[B, N, C] of the model"},
                    "data": {"type": "array", "description": "B*N*C symbols, flat or nested",
                             "items": {"type": ["integer", "array"], "minimum": 0, "maximum": 255}},
                    "parameters": _PARAMETERS,
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": _PARAMETERS}}},
    },
}

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An OIP v2 infer request: JSON, JSON followed by binary tensor data "
        "(Inference-Header-Content-Length), or msgpack with the tensor data as bytes. The input's shape "
        "must be the model's [B, N, C] (GET /v2/models/{name}) and data must hold B*N*C values: "
        "otherwise 400.",
        "content": {
            "application/json": {"schema": _INFER},
            "application/octet-stream": {"schema": _BINARY},
            CONTENT_TYPE: {"schema": _INFER},
        },
    }
}
INFER_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The outputs: JSON, JSON followed by binary tensor data, or msgpack (for a msgpack request).",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": _BINARY},
            CONTENT_TYPE: {"schema": _BINARY},
        },
    }
}

ADMIN_LOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'JSON {"path": DIR} of a bundle the server can read, or a .tar.gz of one (devtune push).',
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["path"],
                    "additionalProperties": False,
                    "properties": {"path": {"type": "string", "minLength": 1}},
                }
            },
            "application/gzip": {"schema": _BINARY},
        },
    }
}

METRICS_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format.",
          "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
}


def install_openapi(app: FastAPI) -> None:
    """/openapi.json as FastAPI builds it, with the OIP ``{version}`` parameter's real form: the
    routes take a string and answer 400 unless it is a positive integer."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v2/") or "{version}" not in path:
                continue
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "version":
                        parameter["schema"] = {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
