"""A server under measurement: its own uvicorn process, and what it says it spent.

Between two ``Snapshot``s of its /metrics page and its /proc entry: the mean batch its
requests rode in, the decoder time per batch, the CPU seconds the process used, and the
mean ms per request of each stage the server times (``stages_ms``)::

    app       from the request reaching the app (the ASGI middleware) to its answer's start
    decode    unpacking the payload: entropy decode and dequantize
    queue     waiting in the batcher for a decoder pass
    compute   the decoder passes of the batch the request rode in
    other     app - decode - queue - compute: routing, checks, building and packing the answer

What lies before ``app`` (the HTTP parser, the event loop) is the CPU time less what
the stages account for; a profile of the real server shows it (docs/serving.md).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtune.server_process import ServerProcess, Stack

__all__ = ["ServerStats", "Snapshot", "start_server"]

log = logging.getLogger("devtune")


def start_server(exits: ExitStack, bundle: Path, *, src: Path | None = None, stack: Stack = "auto",
                 **settings: object) -> ServerProcess:
    """A server for ``bundle`` (auth off, errors only in its log), stopped when ``exits`` closes;
    ``src`` and ``stack`` as ``ServerProcess`` takes them."""
    from devtune.server_process import ServerProcess

    process = ServerProcess(bundle, None, src=src, stack=stack, auth="off", log_level="error", **settings)
    log.info("starting a server on %s (%s)", process.url, ", ".join(f"{k}={v}" for k, v in settings.items()))
    return exits.enter_context(process)


@dataclass(frozen=True)
class ServerStats:
    """What a server spent between two snapshots."""

    mean_batch: float  # request-weighted: each request counts the size of the batch it rode in
    compute_ms: float  # decoder time per batch, request-weighted alike
    cpu_s: float | None  # the server process's CPU time (None where /proc cannot say)
    stages_ms: dict[str, float] | None = None  # mean ms per request of each stage (module docstring)


@dataclass(frozen=True)
class Snapshot:
    """What a server's /metrics and /proc say at one moment."""

    samples: float  # sum of devtune_batch_samples: each request adds the size of its batch
    compute_s: float  # sum of devtune_compute_seconds: each request adds its batch's decoder time
    requests: float  # their count
    cpu_s: float | None  # the server process's CPU time
    decode_s: float = 0.0  # sums over requests of devtune_decode_seconds ...
    queue_s: float = 0.0  # ... devtune_queue_seconds
    app_s: float = 0.0  # ... and devtune_request_seconds of the inference routes
    app_requests: float = 0.0

    @classmethod
    def take(cls, process: ServerProcess) -> Snapshot:
        import httpx

        from devtune.bench.loadgen import process_cpu_seconds, scrape_histogram, scrape_labelled_histogram

        page = httpx.get(f"{process.url}/metrics", timeout=5.0).text
        samples, requests = scrape_histogram(page, "devtune_batch_samples")
        compute_s, _ = scrape_histogram(page, "devtune_compute_seconds")
        decode_s, _ = scrape_histogram(page, "devtune_decode_seconds")
        queue_s, _ = scrape_histogram(page, "devtune_queue_seconds")
        app_s, app_requests = scrape_labelled_histogram(page, "devtune_request_seconds", skip='"/metrics"')
        pid = process.process.pid if process.process is not None else -1
        return cls(samples, compute_s, requests, process_cpu_seconds(pid), decode_s, queue_s, app_s, app_requests)

    def since(self, before: Snapshot) -> ServerStats:
        """Request-weighted mean batch and decoder ms per batch, and CPU seconds, between two snapshots."""
        requests = self.requests - before.requests
        cpu = self.cpu_s - before.cpu_s if self.cpu_s is not None and before.cpu_s is not None else None
        if requests <= 0:
            return ServerStats(0.0, 0.0, cpu)
        per_request = {
            "decode": (self.decode_s - before.decode_s) / requests * 1000,
            "queue": (self.queue_s - before.queue_s) / requests * 1000,
            "compute": (self.compute_s - before.compute_s) / requests * 1000,
        }
        app_requests = self.app_requests - before.app_requests
        app = (self.app_s - before.app_s) / app_requests * 1000 if app_requests > 0 else 0.0
        stages = {"app": app, **per_request, "other": app - sum(per_request.values())}
        return ServerStats((self.samples - before.samples) / requests, per_request["compute"], cpu,
                           {k: round(v, 3) for k, v in stages.items()})
