"""Prometheus metrics, one registry per app so several apps can live in one process.

With several worker processes (``CloudSettings.workers``) each has its own registry and
a scrape of /metrics is answered by one of them: ``devtune_worker_info`` names which
(its PID). Scrape each pod's workers over time, or run one worker per pod, to sum them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    in_flight: int = 0  # HTTP requests the app is handling right now (``Observe`` counts them)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("devtune_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("devtune_request_seconds", "Wall time per request", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("devtune_queue_seconds", "Time waiting in the batcher", buckets=_LATENCY_BUCKETS,
                               registry=r)
        self.decode = Histogram("devtune_decode_seconds", "Payload decoding (entropy decode + dequantize)",
                                buckets=_LATENCY_BUCKETS, registry=r)
        self.compute = Histogram("devtune_compute_seconds", "Decoder passes of the batch a request rode in",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("devtune_batch_samples", "Samples per decoder batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.received = Counter("devtune_received_bytes", "Request body bytes received", ["route"], registry=r)
        self.refused = Counter(
            "devtune_refused",
            "Inference requests answered 503 instead of a result: over the admission limit (admission "
            "gate), or by the data plane when the batcher queue was full, the version was stopping, its "
            "worker had died or no decoder pass answered within the queue deadline",
            registry=r,
        )
        self.worker = Info("devtune_worker", "The server process that answered this scrape", registry=r)
        self.worker.info({"pid": str(os.getpid())})
