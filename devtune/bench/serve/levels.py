"""Closed-loop levels against a batching and a non-batching server side by side, then the overload.

Each level is measured on one server right after the other, so that other work on the
machine weighs on both alike. The overload run offers ``overload_factor`` times the
saturating rate, measured again just before it so that both see the same machine.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devtune.bench.loadgen import LevelResult, OpenLoopResult
from devtune.bench.serve.plan import BATCH_ON, Plan

if TYPE_CHECKING:
    from devtune.bench.loadgen import Workload
    from devtune.bench.serve.bodies import Bodies
    from devtune.server_process import ServerProcess

__all__ = ["Level", "Overload", "levels_and_overload", "saturation"]

log = logging.getLogger("devtune")


@dataclass(frozen=True)
class Level:
    """One closed-loop level on one server, with what the server says it spent meanwhile."""

    batching: bool
    encoding: str  # msgpack or json
    result: LevelResult
    mean_batch: float  # request-weighted mean batch size in the server
    decoder_rps_in_server: float  # samples/s of the decoders inside the server at that batch size
    server_cpu_s: float | None
    server_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float

    @property
    def concurrency(self) -> int:
        return self.result.concurrency

    @property
    def throughput_rps(self) -> float:
        return self.result.throughput_rps


@dataclass(frozen=True)
class Overload:
    """The open-loop run beyond saturation on the batching server."""

    encoding: str
    concurrency: int  # where the closed loop saturated
    saturating_rps: float  # measured again right before the run
    factor: float  # offered rate / saturating_rps
    max_queue: int
    connections: int
    result: OpenLoopResult


def saturation(levels: list[Level], encoding: str) -> Level:
    """The batched level of ``encoding`` with the highest throughput."""
    return max((r for r in levels if r.batching and r.encoding == encoding), key=lambda r: r.throughput_rps)


def _run_level(process: ServerProcess, workload: Workload, batching: bool, encoding: str, concurrency: int,
               plan: Plan) -> Level:
    from devtune.bench.loadgen import closed_loop
    from devtune.bench.serve.servers import Snapshot

    before = Snapshot.take(process)
    result = closed_loop(workload, concurrency, plan.seconds, plan.max_requests, plan.warmup_s, plan.timeout,
                         plan.client)
    stats = Snapshot.take(process).since(before)  # the warm-up's requests are in too: close enough for means
    batch, compute_ms, cpu = stats.mean_batch, stats.compute_ms, stats.cpu_s
    sent = max(1, result.sent)
    return Level(
        batching=batching,
        encoding=encoding,
        result=result,
        mean_batch=round(batch, 2),
        decoder_rps_in_server=round(batch / compute_ms * 1000, 1) if compute_ms else 0.0,
        server_cpu_s=round(cpu, 3) if cpu is not None else None,
        server_cpu_ms_per_request=round(cpu / sent * 1000, 3) if cpu is not None else None,
        client_cpu_ms_per_request=round(result.client_cpu_s / sent * 1000, 3),
    )


def _workloads(process: ServerProcess, model: str, bodies: Bodies) -> dict[str, Workload]:
    from devtune.bench.loadgen import Workload
    from shared.protocol import CONTENT_TYPE

    return {
        "msgpack": Workload(f"{process.url}/v1/predict", bodies.msgpack, {"Content-Type": CONTENT_TYPE}),
        "json": Workload(f"{process.url}/v2/models/{model}/infer", bodies.json, {"Content-Type": "application/json"}),
    }


def levels_and_overload(bundle: Path, model: str, bodies: Bodies, plan: Plan) -> tuple[list[Level], Overload]:
    """Every (encoding, concurrency) on both servers, then the overload run on the batching one."""
    from devtune.bench.loadgen import closed_loop, open_loop
    from devtune.bench.serve.servers import start_server

    levels: list[Level] = []
    common = {"max_queue_delay_ms": plan.delay_ms, "max_queue": plan.max_queue}
    with ExitStack() as stack:
        servers = {True: start_server(stack, bundle, max_batch_size=BATCH_ON, **common),
                   False: start_server(stack, bundle, max_batch_size=1, **common)}
        workloads = {batching: _workloads(process, model, bodies) for batching, process in servers.items()}
        for encoding in plan.encodings:
            for concurrency in plan.concurrency:
                for batching, process in servers.items():
                    level = _run_level(process, workloads[batching][encoding], batching, encoding, concurrency, plan)
                    r = level.result
                    log.info("batching %-3s %-7s c=%-3d %7.1f req/s  p50 %7.2f  p99 %7.2f ms  batch %5.1f  "
                             "errors %d  503 %d", "on" if batching else "off", encoding, concurrency,
                             r.throughput_rps, r.p50_ms, r.p99_ms, level.mean_batch, r.errors, r.refused_503)
                    levels.append(level)

        # Saturation, measured again right before the overload so that both see the same machine.
        encoding = plan.encodings[0]
        best = saturation(levels, encoding)
        workload = workloads[True][encoding]
        saturated = closed_loop(workload, best.concurrency, plan.seconds, plan.max_requests, plan.warmup_s,
                                plan.timeout, plan.client)
        rate = max(1.0, saturated.throughput_rps * plan.overload_factor)
        log.info("overload: %.0f req/s (%.1f x %.0f at concurrency %d) for %.1f s", rate, plan.overload_factor,
                 saturated.throughput_rps, best.concurrency, plan.overload_seconds)
        result = open_loop(workload, rate, plan.overload_seconds, max(1, round(rate * plan.overload_seconds)),
                           connections=plan.connections, timeout=plan.timeout, client=plan.client)
        overload = Overload(encoding, best.concurrency, saturated.throughput_rps, plan.overload_factor,
                            plan.max_queue, plan.connections, result)
        log.info("overload: sent %d, answered %d, refused %d, lost %d; slowest answer %.0f ms", result.sent,
                 result.answered, result.refused_503, result.lost, result.max_ms)
        child = servers[True].process
        if child is None or child.poll() is not None:
            raise RuntimeError("the server died during the overload run; see its log above")
    return levels, overload
