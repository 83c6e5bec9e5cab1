"""The one place that maps domain errors to HTTP: status, JSON body, headers."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    BundleError,
    DeviceTuningError,
    FingerprintMismatch,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    UnknownTask,
    UnsupportedMediaType,
)

__all__ = ["error_response", "install_error_handlers", "status_for"]

log = logging.getLogger("cloud_server")

# Most specific first: the first match wins.
_STATUS: list[tuple[type[DeviceTuningError], int]] = [
    (UnsupportedMediaType, 415),
    (PayloadTooLarge, 413),
    (ProtocolError, 400),
    (FingerprintMismatch, 409),
    (UnknownTask, 404),
    (Overloaded, 503),
    (BundleError, 404),
]


def status_for(exc: DeviceTuningError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _body(request: Request, kind: str, detail: object) -> dict[str, object]:
    """{"error": kind, "detail": message}; on OIP routes "error" carries the message too,
    since OIP clients (tritonclient) show only that field."""
    error = f"{kind}: {detail}" if request.url.path.startswith("/v2/") else kind
    return {"error": error, "detail": detail}


def error_response(exc: DeviceTuningError, request: Request) -> JSONResponse:
    body = _body(request, _snake(type(exc).__name__), str(exc))
    headers = {}
    if isinstance(exc, FingerprintMismatch):
        body["expected"] = exc.expected
    if isinstance(exc, UnknownTask):
        body["known"] = exc.known
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DeviceTuningError)
        return error_response(exc, request)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            _body(request, _snake(type(exc).__name__), exc.detail),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"error": "invalid_request", "detail": str(exc.errors())[:2000]}, status_code=422)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(
            {"error": "internal_error", "detail": f"{type(exc).__name__}: the server logged it; report it"},
            status_code=500,
        )

    app.add_exception_handler(DeviceTuningError, domain)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(Exception, unexpected)
