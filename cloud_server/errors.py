"""The one place that maps domain errors to HTTP: status, JSON body, headers.

Every error body is ``{"error": kind, "detail": message}``. Routes built with
``ErrorMessageRoute`` (the OIP routers) answer ``"error": "kind: message"`` instead, since
OIP clients (tritonclient) show only that field: the route decides, not its URL.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    BundleError,
    DeviceTuningError,
    FingerprintMismatch,
    IntegrityError,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    UnknownTask,
    UnsupportedMediaType,
)

__all__ = ["ErrorMessageRoute", "error_response", "install_error_handlers", "status_for"]

log = logging.getLogger("cloud_server")

# Most specific first: the first match wins.
_STATUS: list[tuple[type[DeviceTuningError], int]] = [
    (UnsupportedMediaType, 415),
    (PayloadTooLarge, 413),
    (ProtocolError, 400),
    (FingerprintMismatch, 409),
    (UnknownTask, 404),
    (Overloaded, 503),
    (IntegrityError, 422),  # a bundle whose files are not what its manifest says (an upload, a path)
    (BundleError, 404),
]


def status_for(exc: DeviceTuningError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _snake(name: str) -> str:
    """``FingerprintMismatch`` -> ``fingerprint_mismatch``; an acronym stays one word (``http_exception``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class ErrorMessageRoute(APIRoute):
    """A route whose error bodies carry the message in "error" too, for clients that show only
    that field (OIP: tritonclient). Build a router with ``APIRouter(route_class=ErrorMessageRoute)``.

    The router puts the route it matched in ``scope["route"]``, also when only the path
    matched (405), so every error of the route, from auth to the handler, is told apart.
    """


def _body(request: Request, kind: str, detail: object, message_in_error: bool | None) -> dict[str, object]:
    """{"error": kind, "detail": message}, with "error": "kind: message" where the route asks."""
    if message_in_error is None:
        message_in_error = isinstance(request.scope.get("route"), ErrorMessageRoute)
    return {"error": f"{kind}: {detail}" if message_in_error else kind, "detail": detail}


def error_response(
    exc: DeviceTuningError, request: Request, message_in_error: bool | None = None
) -> JSONResponse:
    """The answer to ``exc``. ``message_in_error`` is for callers that answer before any
    route is matched (the admission gate); by default the matched route decides."""
    body = _body(request, _snake(type(exc).__name__), str(exc), message_in_error)
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
            _body(request, _snake(type(exc).__name__), exc.detail, None),
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
