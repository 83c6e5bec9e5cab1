"""Run the app under uvicorn with graceful shutdown (SIGTERM drains in-flight work).

With ``workers`` above 1, uvicorn's supervisor starts that many processes on one
listening socket; each builds its own app (``worker_app``) from the same settings, so
each has its own event loop, decoders and batcher, and the kernel hands each new
connection to one of them. SIGTERM to the supervisor stops every worker, each draining
what it accepted. ``workers=0`` means one per whole CPU the process may use
(``available_cpus``), so an image or a pod sizes itself from the CPUs it is given.
"""

from __future__ import annotations

import json
import logging
import os
import time

import uvicorn
from fastapi import FastAPI

from cloud_server.app import create_app
from cloud_server.settings import CloudSettings

__all__ = ["JsonFormatter", "resolve_workers", "serve", "worker_app"]

_WORKER_SETTINGS = "_DEVTUNE_CLOUD_WORKER_SETTINGS"
"""The supervisor's settings as JSON, for the workers it spawns (not a DEVTUNE_CLOUD_ field)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def resolve_workers(settings: CloudSettings) -> int:
    """The number of server processes ``settings`` asks for (0: ``available_cpus()``)."""
    return settings.worker_count()


def _configure_logging(settings: CloudSettings) -> None:
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


def worker_app() -> FastAPI:
    """The app of one worker process, from the supervisor's settings (uvicorn's factory)."""
    settings = CloudSettings.model_validate_json(os.environ[_WORKER_SETTINGS])
    _configure_logging(settings)
    return create_app(settings)


def serve(settings: CloudSettings) -> None:
    _configure_logging(settings)
    workers = resolve_workers(settings)
    app: FastAPI | str
    if workers == 1:
        app = create_app(settings)
    else:
        # uvicorn spawns the workers afresh: they rebuild the app by name, from these settings.
        os.environ[_WORKER_SETTINGS] = settings.model_dump_json()
        logging.getLogger("cloud_server").info("starting %d worker processes", workers)
        app = "cloud_server.serve:worker_app"
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=30,
        access_log=False,
    )
