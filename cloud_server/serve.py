"""Run the app under uvicorn with graceful shutdown (SIGTERM drains in-flight work)."""

from __future__ import annotations

import logging

import uvicorn

from cloud_server.app import create_app
from cloud_server.settings import CloudSettings

__all__ = ["serve"]


def serve(settings: CloudSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
        access_log=False,
    )
