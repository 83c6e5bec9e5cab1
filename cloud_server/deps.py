"""What the routes share: the data plane and the limits as ``Annotated`` dependencies, who may
call (auth requirements), and reading a bounded body.

The app (``app.py``) and the routers (``admin.py``, ``oip.py``) import this module; it
imports none of them, so the app can import its routers at the top.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from cloud_server.auth import Access, KeyRing
from cloud_server.dataplane import DataPlane
from cloud_server.follower import RepositoryFollower
from cloud_server.metrics import Metrics
from cloud_server.repository import Repository
from shared.errors import PayloadTooLarge
from shared.protocol import Limits

__all__ = [
    "AppMetrics", "Follower", "Plane", "Repo", "RequestLimits", "admin_access", "inference_access", "read_body", "require",
]


# Every dependency here is async: FastAPI runs a plain ``def`` dependency in a worker
# thread, two thread hops per request that cost about a quarter of its CPU time.


async def get_plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


async def get_repository(request: Request) -> Repository:
    repository: Repository = request.app.state.repository
    return repository


async def get_follower(request: Request) -> RepositoryFollower | None:
    follower: RepositoryFollower | None = request.app.state.follower
    return follower


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


Plane = Annotated[DataPlane, Depends(get_plane)]
"""The app's data plane: which bundles are served, and inference over them."""
RequestLimits = Annotated[Limits, Depends(get_limits)]
"""Bounds on a request (body bytes, samples, tasks) from the settings."""
AppMetrics = Annotated[Metrics, Depends(get_metrics)]
"""The app's Prometheus metrics."""
Repo = Annotated[Repository, Depends(get_repository)]
"""Where uploaded bundles are installed."""
Follower = Annotated[RepositoryFollower | None, Depends(get_follower)]
"""What keeps the served versions in step with the repository (None without one)."""


def require(access: Access) -> Callable[[Request], Awaitable[None]]:
    """A dependency that checks the bearer token for ``access``: 401 without one, 403 for the wrong kind."""

    async def check(request: Request) -> None:
        keys: KeyRing = request.app.state.keys
        keys.check(request, access)

    return check


inference_access = Depends(require(Access.INFERENCE))
"""Routes that serve predictions and describe models: an inference (or admin) key."""
admin_access = Depends(require(Access.ADMIN))
"""Routes that manage models: an admin key."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit; send fewer samples")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit; send fewer samples per request")
        chunks.append(chunk)
    return b"".join(chunks)
