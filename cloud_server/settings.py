"""Settings of the cloud server, read from DEVTUNE_CLOUD_* variables or passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud_server.cpus import available_cpus

__all__ = ["CloudSettings"]


class CloudSettings(BaseSettings):
    """Built once by the caller and handed to ``create_app``; never read at import time."""

    model_config = SettingsConfigDict(env_prefix="DEVTUNE_CLOUD_", extra="ignore")

    bundle: Path | None = None
    """A bundle directory to serve."""
    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 inside a container."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""
    threads: int = Field(1, ge=1, le=64)
    """ONNX Runtime intra-op threads per decoder session."""
    pass_threads: int = Field(0, ge=0, le=64)
    """Threads that run one decoder pass's tasks side by side, so a pass of k tasks takes about
    k / pass_threads decoder runs of time (1: one after the other; 0: the usable CPUs shared out
    among the workers, at least 1)."""
    workers: int = Field(1, ge=0, le=256)
    """Server processes on the one port, each with its own event loop, decoders and batcher (0: one
    per whole CPU this process may use: its CPU affinity, capped by a cgroup CPU quota such as
    ``docker run --cpus`` or a Kubernetes CPU limit). Each loads every bundle, so memory grows with
    them; an admin load or unload reaches one of them, so with several serve a ``repository``,
    which each follows."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    max_batch: int = Field(256, ge=1)
    """Most samples in one request."""
    max_tasks: int = Field(64, ge=1)
    """Most tasks named in one request."""
    max_batch_size: int = Field(64, ge=1)
    """Most samples the dynamic batcher runs through a decoder at once (1 turns batching off)."""
    max_queue_delay_ms: float = Field(2.0, ge=0)
    """Longest the batcher holds a batch for more requests, counted from its first; it waits only
    while other requests are on their way to it (being decoded), so a lone request runs at once."""
    max_queue: int = Field(512, ge=1)
    """Most requests waiting in the batcher; beyond it the server answers 503 at once."""
    queue_deadline_ms: float = Field(5000.0, gt=0)
    """Longest a request waits for its decoder pass (in the batcher queue and in the pass); past
    it the server answers 503 with Retry-After rather than keep it waiting. Below the clients'
    timeout (the device client's is 10 s), so that they hear "overloaded" instead of nothing."""
    auth: Literal["auto", "on", "off"] = "auto"
    """Bearer-token auth: on, off (explicit, for local use), or auto (on unless loopback without keys)."""
    api_keys: list[str] = []
    """Inference keys (JSON list in the environment)."""
    admin_keys: list[str] = []
    """Admin keys: load and unload models."""
    keys_file: Path | None = None
    """JSON file {"inference": [...], "admin": [...]}, e.g. a mounted Kubernetes Secret."""
    repository: Path | None = None
    """A model repository: a directory of bundles (any depth), all loaded at start; uploads land
    in it. Replicas that share it (a shared volume) serve the same versions (``poll_seconds``)."""
    poll_seconds: float = Field(5.0, ge=0)
    """How often the repository is scanned for new, changed and removed bundles (0: only at start
    and after an upload). A bundle written into it serves on every replica within this plus the
    time to load and warm it."""
    keep_versions: int = Field(0, ge=0)
    """Serve only the newest N versions of each name from the repository, and any version that is
    still the newest for some device fingerprint (0: every version). Files are never deleted."""
    otel: bool = False
    """FastAPI's OpenTelemetry spans, metrics and logs per request, for a process whose providers are
    configured (e.g. under ``opentelemetry-instrument``). Off, a request does not pay for asking."""
    log_json: bool = False
    """Write logs as JSON lines with the request id."""
    log_level: str = "info"
    """Python logging level of the server."""

    def worker_count(self) -> int:
        """Server processes to start: ``workers``, or one per usable CPU when it is 0."""
        return self.workers or available_cpus()

    def pass_thread_count(self) -> int:
        """Threads per decoder pass: ``pass_threads``, or the usable CPUs over the workers when it is 0."""
        return self.pass_threads or max(1, available_cpus() // self.worker_count())
