"""Admission at the door: inference requests beyond a limit in flight get 503 before any work.

The batcher refuses when its queue is full, but a request reaches the batcher only after
HTTP parsing, the middleware, reading its body and decoding its payload. When the event
loop, not the decoders, is what saturates, the backlog builds up in front of the batcher,
where its queue limit cannot see it: every request slows down together and, past the
client's timeout, is lost instead of refused. This gate, the outermost middleware, counts
inference requests from the moment the app receives them until they are answered and
refuses the ones beyond ``limit`` at once, without reading their bodies, with the same
503 and Retry-After as a full batcher queue.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud_server.errors import error_response
from cloud_server.metrics import Metrics
from shared.errors import ConfigError, Overloaded

__all__ = ["AdmissionGate", "inference_protocol", "is_inference"]


def inference_protocol(scope: Scope) -> Literal["native", "oip"] | None:
    """Which inference route a request is for, before routing: POST /v1/predict (native) or
    POST /v2/models/{name}[/versions/{v}]/infer (oip); None for every other request."""
    if scope.get("method") != "POST":
        return None
    path: str = scope.get("path", "")
    if path == "/v1/predict":
        return "native"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "oip"
    return None


def is_inference(scope: Scope) -> bool:
    return inference_protocol(scope) is not None


class AdmissionGate:
    """Pure ASGI (no task or stream per request): the cheap way to say no."""

    def __init__(self, app: ASGIApp, limit: int, metrics: Metrics | None = None, retry_after: float = 1.0) -> None:
        if limit < 1:
            raise ConfigError(f"admission limit must be at least 1, got {limit}; raise max_queue or max_batch_size")
        self.app = app
        self.limit = limit
        self.metrics = metrics
        self.retry_after = retry_after
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or inference_protocol(scope) is None:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.metrics is not None:
            self.metrics.refused.inc()
        overloaded = Overloaded(
            f"server is at capacity ({self.in_flight} inference requests in flight); retry shortly",
            retry_after=self.retry_after,
        )
        # No route is matched yet: answer as the OIP routes would (message in "error") for theirs.
        oip = inference_protocol(scope) == "oip"
        answer = error_response(overloaded, Request(scope), message_in_error=oip)
        await answer(scope, receive, send)
