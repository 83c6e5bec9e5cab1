"""Open Inference Protocol v2 (REST) over the data plane. Being written; see issue 4."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["oip_public_router", "oip_router"]

oip_public_router = APIRouter()
oip_router = APIRouter()
