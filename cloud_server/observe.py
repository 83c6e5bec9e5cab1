"""Per-request observation as pure ASGI: request id, Server-Timing, metrics, one log line,
and the count of requests in flight (``Metrics.in_flight``: the batcher runs a lone one's
decoder pass on the loop).

Pure ASGI rather than ``@app.middleware("http")``, which wraps every request in an extra
task and stream: measured about a fifth less CPU per request this way.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_server.metrics import Metrics

__all__ = ["Observe"]

log = logging.getLogger("cloud_server")


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = next(
            (value.decode("latin-1") for key, value in scope["headers"] if key == b"x-request-id"), None
        ) or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        self.metrics.in_flight += 1

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("X-Request-ID", request_id)
                headers.append("Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.in_flight -= 1
            elapsed = time.perf_counter() - started
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(elapsed)
            if status >= 400 or log.isEnabledFor(logging.DEBUG):
                log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, elapsed * 1000,
                         extra={"request_id": request_id})
