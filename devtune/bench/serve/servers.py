"""A server under measurement: its own uvicorn process, and what it says it spent.

Between two ``Snapshot``s of its /metrics page and its /proc entry: the mean batch its
requests rode in, the decoder time per batch, and the CPU seconds the process used.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtune.server_process import ServerProcess

__all__ = ["ServerStats", "Snapshot", "start_server"]

log = logging.getLogger("devtune")


def start_server(stack: ExitStack, bundle: Path, **settings: object) -> ServerProcess:
    """A server for ``bundle`` (auth off, errors only in its log), stopped when ``stack`` closes."""
    from devtune.server_process import ServerProcess

    process = ServerProcess(bundle, None, auth="off", log_level="error", **settings)
    log.info("starting a server on %s (%s)", process.url, ", ".join(f"{k}={v}" for k, v in settings.items()))
    return stack.enter_context(process)


@dataclass(frozen=True)
class ServerStats:
    """What a server spent between two snapshots."""

    mean_batch: float  # request-weighted: each request counts the size of the batch it rode in
    compute_ms: float  # decoder time per batch, request-weighted alike
    cpu_s: float | None  # the server process's CPU time (None where /proc cannot say)


@dataclass(frozen=True)
class Snapshot:
    """What a server's /metrics and /proc say at one moment."""

    samples: float  # sum of devtune_batch_samples: each request adds the size of its batch
    compute_s: float  # sum of devtune_compute_seconds: each request adds its batch's decoder time
    requests: float  # their count
    cpu_s: float | None  # the server process's CPU time

    @classmethod
    def take(cls, process: ServerProcess) -> Snapshot:
        import httpx

        from devtune.bench.loadgen import process_cpu_seconds, scrape_histogram

        page = httpx.get(f"{process.url}/metrics", timeout=5.0).text
        samples, requests = scrape_histogram(page, "devtune_batch_samples")
        compute_s, _ = scrape_histogram(page, "devtune_compute_seconds")
        pid = process.process.pid if process.process is not None else -1
        return cls(samples, compute_s, requests, process_cpu_seconds(pid))

    def since(self, before: Snapshot) -> ServerStats:
        """Request-weighted mean batch and decoder ms per batch, and CPU seconds, between two snapshots."""
        requests = self.requests - before.requests
        cpu = self.cpu_s - before.cpu_s if self.cpu_s is not None and before.cpu_s is not None else None
        if requests <= 0:
            return ServerStats(0.0, 0.0, cpu)
        return ServerStats((self.samples - before.samples) / requests,
                           (self.compute_s - before.compute_s) / requests * 1000, cpu)
