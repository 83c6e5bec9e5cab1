"""Admin API (admin key): list, load and unload bundle versions in a running server.

A bundle can be loaded from a path the server can read, or uploaded as a .tar.gz of
the bundle directory (``devtune push``); an upload is unpacked into the repository
directory under ``<name>/<version>/`` and loaded. Loading swaps atomically: requests in
flight finish on the version they started on.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from cloud_server.dataplane import DataPlane
from cloud_server.deps import Plane, admin_access, read_body
from shared.bundle import read_manifest
from shared.errors import BundleError, ProtocolError

__all__ = ["admin_router"]

admin_router = APIRouter(prefix="/admin", dependencies=[admin_access])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


class LoadRequest(BaseModel):
    path: str
    """A bundle directory on the server's file system."""


@admin_router.get("/models")
async def list_models(plane: Plane) -> list[dict[str, Any]]:
    return [served.describe() for served in plane.models.values()]


@admin_router.post("/models/load")
async def load_model(request: Request, plane: Plane) -> dict[str, Any]:
    """JSON ``{"path": DIR}``, or a gzip'd tar of a bundle (Content-Type: application/gzip)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type in ("application/gzip", "application/x-gzip", "application/x-tar"):
        archive = await read_body(request, MAX_UPLOAD_BYTES)
        path = _unpack_upload(archive, plane)
    elif content_type == "application/json":
        path = Path(LoadRequest.model_validate_json(await request.body()).path)
    else:
        raise ProtocolError(
            "send JSON {\"path\": DIR} with Content-Type: application/json, or a bundle .tar.gz "
            "with Content-Type: application/gzip"
        )
    served = await plane.load(path)
    return {"loaded": served.describe()}


@admin_router.delete("/models/{name}/versions/{version}")
async def unload_model(name: str, version: int, plane: Plane) -> dict[str, str]:
    await plane.unload(name, version)
    return {"unloaded": f"{name} v{version}"}


def _unpack_upload(archive: bytes, plane: DataPlane) -> Path:
    """Unpack into a temporary directory (never outside it), then move into the repository."""
    root = plane.settings.repository
    if root is None:
        root = Path(tempfile.gettempdir()) / "devtune-uploads"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".upload-"))
    try:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths, .. and links out
        except (tarfile.TarError, OSError) as exc:
            raise ProtocolError(f"upload is not a readable bundle archive ({exc}); send a .tar.gz") from exc
        manifests = list(staging.rglob("manifest.json"))
        if len(manifests) != 1:
            raise BundleError(f"archive holds {len(manifests)} manifest.json files; send exactly one bundle")
        manifest = read_manifest(manifests[0].parent)
        target = root / manifest.name / str(manifest.version)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(manifests[0].parent), target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
