"""Admin API (admin key): list, load and unload bundle versions in a running server.

A bundle can be loaded from a path the server can read, or uploaded as a .tar.gz of
the bundle directory (``devtune push``); an upload is checked, loaded and warmed before
it is installed in the repository under ``<name>/<version>/`` (``repository.py``), so a
refused one changes nothing. Loading swaps atomically: requests in flight finish on the
version they started on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from cloud_server.deps import Follower, Plane, Repo, admin_access, read_body
from cloud_server.openapi import ADMIN_ERRORS, ADMIN_LOAD_BODY, errors
from shared.errors import ProtocolError

__all__ = ["admin_router"]

admin_router = APIRouter(prefix="/admin", dependencies=[admin_access])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024
ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """A bundle directory on the server's file system."""


@admin_router.get("/models", responses=errors(401, 403))
async def list_models(plane: Plane) -> list[dict[str, Any]]:
    return [served.describe() for served in plane.models.values()]


@admin_router.post("/models/load", responses=errors(400, 401, 403, 404, 413, 422), openapi_extra=ADMIN_LOAD_BODY)
async def load_model(request: Request, plane: Plane, repository: Repo, follower: Follower) -> dict[str, Any]:
    """JSON ``{"path": DIR}``, or a gzip'd tar of a bundle (Content-Type: application/gzip)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type in ARCHIVE_TYPES:
        served = await repository.upload(await read_body(request, MAX_UPLOAD_BYTES), plane)
        if follower is not None:
            await follower.sync()  # the keep policy, at once; other replicas see it at their next scan
    elif content_type == "application/json":
        served = await plane.load(_load_request(await read_body(request, MAX_JSON_BYTES)).path)
    else:
        raise ProtocolError(
            "send JSON {\"path\": DIR} with Content-Type: application/json, or a bundle .tar.gz "
            "with Content-Type: application/gzip"
        )
    return {"loaded": served.describe()}


@admin_router.delete("/models/{name}/versions/{version}", responses=ADMIN_ERRORS)
async def unload_model(name: str, version: int, plane: Plane) -> dict[str, str]:
    await plane.unload(name, version)
    return {"unloaded": f"{name} v{version}"}


def _load_request(body: bytes) -> LoadRequest:
    try:
        request = LoadRequest.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}" for error in exc.errors()[:3]
        )
        raise ProtocolError(f'load request is not JSON {{"path": DIR}} ({problems}); send the bundle\'s path') from exc
    if not request.path:
        raise ProtocolError('load request has an empty path; send {"path": DIR} with a bundle directory')
    return request
