"""The FastAPI app: thin routes over the data plane. Build it with ``create_app(settings)``.

Routes: native msgpack ``/v1/*``, health ``/healthz`` ``/readyz``, Prometheus ``/metrics``,
the Open Inference Protocol v2 under ``/v2`` (``oip.py``) and the admin API under
``/admin`` (``admin.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud_server.admin import admin_router
from cloud_server.admission import AdmissionGate
from cloud_server.auth import keyring_from
from cloud_server.dataplane import DataPlane
from cloud_server.deps import Plane, inference_access, read_body
from cloud_server.errors import install_error_handlers
from cloud_server.follower import RepositoryFollower
from cloud_server.image_input import image_router
from cloud_server.metrics import Metrics
from cloud_server.observe import Observe
from cloud_server.oip import oip_public_router, oip_router
from cloud_server.openapi import (
    METRICS_OK,
    PREDICT_BODY,
    PREDICT_ERRORS,
    PREDICT_OK,
    READY_ERRORS,
    errors,
    install_openapi,
)
from cloud_server.repository import Repository, find_bundles
from cloud_server.settings import CloudSettings
from shared.protocol import CONTENT_TYPE, Limits, check_content_type, pack_response, unpack_request

__all__ = ["create_app", "find_bundles"]

log = logging.getLogger("cloud_server")


def _telemetry(on: bool) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry bridge (newer FastAPI) asks on every request whether a tracer,
    meter or logger provider is configured, reading os.environ each time: 1-6% of the server's
    samples in py-spy profiles under load (docs/serving.md). Off unless asked for; an older
    FastAPI has no such bridge and takes no such argument."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": on, "metrics": on, "logs": on}}


def create_app(settings: CloudSettings | None = None) -> FastAPI:
    settings = settings or CloudSettings()
    limits = Limits(
        max_body_bytes=settings.max_body_bytes, max_batch=settings.max_batch, max_tasks=settings.max_tasks
    )
    metrics = Metrics()
    plane = DataPlane(settings, metrics)
    keys = keyring_from(settings)

    repository = Repository(settings.repository or Path(tempfile.gettempdir()) / "devtune-uploads")
    follower = None
    if settings.repository is not None:
        follower = RepositoryFollower(repository, plane, keep_versions=settings.keep_versions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.bundle is not None:
            await plane.load(settings.bundle)
        polling = None
        if follower is not None:
            await follower.sync()  # a broken bundle is skipped and logged, not fatal
            if settings.poll_seconds > 0:
                polling = asyncio.create_task(follower.run(settings.poll_seconds), name="repository-poll")
        yield
        if polling is not None:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
        plane.draining = True
        await plane.close()

    app = FastAPI(title="Device Tuning cloud", version="0.1.0", lifespan=lifespan, **_telemetry(settings.otel))
    app.state.plane = plane
    app.state.settings = settings
    app.state.keys = keys
    app.state.metrics = metrics
    app.state.limits = limits
    app.state.repository = repository
    app.state.follower = follower
    install_error_handlers(app)
    install_openapi(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Live: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses=READY_ERRORS)
    async def readyz(plane: Plane) -> JSONResponse:
        """Ready: a bundle is loaded and its decoders warmed, no batcher worker died, not shutting down."""
        if not plane.ready:
            return JSONResponse({"status": "not ready", "models": plane.list_keys()}, status_code=503)
        return JSONResponse({"status": "ready", "models": plane.list_keys()})

    @app.get("/metrics", response_class=Response, responses=METRICS_OK)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/bundles", dependencies=[inference_access], responses=errors(401, 403))
    async def bundles(plane: Plane) -> list[dict[str, Any]]:
        """Every served bundle: tasks, representation spec, fingerprint."""
        return [served.describe() for served in plane.models.values()]

    @app.post("/v1/predict", response_class=Response, dependencies=[inference_access],
              responses={**PREDICT_OK, **PREDICT_ERRORS}, openapi_extra=PREDICT_BODY)
    async def predict(request: Request, plane: Plane) -> Response:
        """msgpack PredictRequest in, msgpack PredictResponse out."""
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, limits.max_body_bytes)
        metrics.received.labels("/v1/predict").inc(len(body))
        message = unpack_request(body, limits)
        answer = await plane.predict(message)
        packed = await plane.offload(message.rep.shape[0], pack_response, answer)
        return Response(packed, media_type=CONTENT_TYPE)

    app.include_router(admin_router)
    app.include_router(oip_public_router)
    app.include_router(oip_router)
    app.include_router(image_router)
    app.add_middleware(Observe, metrics=metrics)
    # Outermost: refuse what cannot be served before paying for it (admission.py).
    app.add_middleware(AdmissionGate, limit=settings.max_queue + settings.max_batch_size, metrics=metrics)
    return app
