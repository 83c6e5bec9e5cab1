"""How throughput scales with server processes: ``--workers-scaling 1,2,...``.

One server per worker count (``CloudSettings.workers``, batching on), all running side
by side; each is measured at the same concurrency, one right after the other, in
``plan.rounds`` interleaved rounds (median throughput, latencies pooled). CPU is the
whole process tree's (the supervisor and its workers) from /proc. On a machine with
fewer idle cores than workers the extra processes only share the same cores.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devtune.bench.serve.plan import BATCH_ON

if TYPE_CHECKING:
    from devtune.bench.serve.bodies import Bodies
    from devtune.bench.serve.plan import Plan

__all__ = ["WorkerCount", "workers_scaling"]

log = logging.getLogger("devtune")


@dataclass(frozen=True)
class WorkerCount:
    workers: int
    concurrency: int
    throughput_rps: float  # median round
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float | None  # the process tree's, median round
    errors: int


def workers_scaling(bundle: Path, bodies: Bodies, plan: Plan) -> list[WorkerCount]:
    """Throughput at ``plan.workers_concurrency`` for each of ``plan.workers_counts``."""
    from devtune.bench.loadgen import Workload, closed_loop, percentile, process_tree_cpu_seconds
    from devtune.bench.serve.servers import start_server
    from shared.protocol import CONTENT_TYPE

    if not plan.workers_counts:
        return []
    c = plan.workers_concurrency
    rows = []
    with ExitStack() as exits:
        servers = {n: start_server(exits, bundle, workers=n, max_batch_size=BATCH_ON,
                                   max_queue_delay_ms=plan.delay_ms, max_queue=plan.max_queue)
                   for n in plan.workers_counts}
        runs: dict[int, list[tuple[float, float | None, tuple[float, ...], int]]] = {n: [] for n in servers}
        for _ in range(plan.rounds):
            for n, process in servers.items():
                workload = Workload(f"{process.url}/v1/predict", bodies.msgpack, {"Content-Type": CONTENT_TYPE})
                pid = process.process.pid if process.process is not None else -1
                before = process_tree_cpu_seconds(pid)
                result = closed_loop(workload, c, plan.seconds, plan.max_requests, plan.warmup_s, plan.timeout,
                                     plan.client)
                after = process_tree_cpu_seconds(pid)
                cpu = (after - before) / max(1, result.served) * 1000 if after is not None and before is not None \
                    else None
                runs[n].append((result.throughput_rps, cpu, result.latencies_ms, result.errors + result.refused_503))
                log.info("workers %d c=%d: %.1f req/s, p99 %.1f ms", n, c, result.throughput_rps, result.p99_ms)
    for n, measured in runs.items():
        latencies = [ms for _, _, run, _ in measured for ms in run]
        cpus = [cpu for _, cpu, _, _ in measured if cpu is not None]
        rows.append(WorkerCount(
            workers=n, concurrency=c, throughput_rps=round(float(np.median([r for r, *_ in measured])), 1),
            p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
            server_cpu_ms_per_request=round(float(np.median(cpus)), 3) if cpus else None,
            errors=sum(e for *_, e in measured),
        ))
    return rows
