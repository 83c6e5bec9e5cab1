"""Closed-loop levels against several servers side by side, then the overload.

The servers: this tree's with batching on ("now") and off ("now", batching false);
with ``--baseline-src`` an older tree's ("baseline", batching on, protocol v1 bodies
unless ``--baseline-protocol 2``, on the stack its install had); with ``--compare-stack`` this tree's again on the asyncio
loop and h11 ("now-h11"). Each level is measured on one server right after the other,
so that other work on the machine weighs on all alike. The overload run offers
``overload_factor`` times the saturating rate, measured again just before it so that
both see the same machine.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devtune.bench.loadgen import LevelResult, OpenLoopResult
from devtune.bench.serve.plan import BATCH_ON, Plan

if TYPE_CHECKING:
    from devtune.bench.loadgen import Workload
    from devtune.bench.serve.bodies import Bodies
    from devtune.bench.serve.profile import Profile
    from devtune.server_process import ServerProcess, Stack

__all__ = ["Level", "Overload", "levels_and_overload", "merge_rounds", "saturation"]

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
    server: str = "now"  # now, baseline (an older tree) or now-h11 (this tree on asyncio and h11)
    stages_ms: dict[str, float] | None = None  # what the server says each request spent where (servers.py)

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


def saturation(levels: list[Level], encoding: str, server: str = "now") -> Level:
    """The batched level of ``encoding`` on ``server`` with the highest throughput."""
    return max((r for r in levels if r.batching and r.encoding == encoding and r.server == server),
               key=lambda r: r.throughput_rps)


@dataclass(frozen=True)
class _Server:
    name: str
    batching: bool
    process: ServerProcess
    workloads: dict[str, Workload]  # by encoding: what this server is sent


def _run_level(server: _Server, encoding: str, concurrency: int, plan: Plan) -> Level:
    from devtune.bench.loadgen import closed_loop
    from devtune.bench.serve.servers import Snapshot

    before = Snapshot.take(server.process)
    result = closed_loop(server.workloads[encoding], concurrency, plan.seconds, plan.max_requests, plan.warmup_s,
                         plan.timeout, plan.client)
    stats = Snapshot.take(server.process).since(before)  # the warm-up's requests are in too: close enough
    batch, compute_ms, cpu = stats.mean_batch, stats.compute_ms, stats.cpu_s
    sent = max(1, result.sent)
    return Level(
        batching=server.batching,
        encoding=encoding,
        result=result,
        mean_batch=round(batch, 2),
        decoder_rps_in_server=round(batch / compute_ms * 1000, 1) if compute_ms else 0.0,
        server_cpu_s=round(cpu, 3) if cpu is not None else None,
        # the snapshots span the warm-up too, so its requests count
        server_cpu_ms_per_request=round(cpu / max(1, result.served) * 1000, 3) if cpu is not None else None,
        client_cpu_ms_per_request=round(result.client_cpu_s / sent * 1000, 3),
        server=server.name,
        stages_ms=stats.stages_ms,
    )


def _workloads(process: ServerProcess, model: str, bodies: Bodies, protocol_v1: bool = False
               ) -> dict[str, Workload]:
    from devtune.bench.loadgen import Workload
    from shared.protocol import CONTENT_TYPE

    native = bodies.msgpack_v1 if protocol_v1 else bodies.msgpack
    return {
        "msgpack": Workload(f"{process.url}/v1/predict", native, {"Content-Type": CONTENT_TYPE}),
        "json": Workload(f"{process.url}/v2/models/{model}/infer", bodies.json, {"Content-Type": "application/json"}),
    }


def _start_servers(exits: ExitStack, bundle: Path, model: str, bodies: Bodies, plan: Plan) -> list[_Server]:
    from devtune.bench.serve.servers import start_server

    def start(max_batch_size: int, src: Path | None = None, stack: Stack = "auto") -> ServerProcess:
        return start_server(exits, bundle, src=src, stack=stack, max_batch_size=max_batch_size,
                            max_queue_delay_ms=plan.delay_ms, max_queue=plan.max_queue)

    on, off = start(BATCH_ON), start(1)
    servers = [_Server("now", True, on, _workloads(on, model, bodies)),
               _Server("now", False, off, _workloads(off, model, bodies))]
    if plan.baseline_src is not None:
        # An older tree knows only its own settings (others are ignored) and, before v2, protocol v1.
        base = start(BATCH_ON, plan.baseline_src, plan.baseline_stack)
        v1 = plan.baseline_protocol == 1
        servers.append(_Server("baseline", True, base, _workloads(base, model, bodies, protocol_v1=v1)))
    if plan.compare_stack:
        h11 = start(BATCH_ON, stack="h11")
        servers.append(_Server("now-h11", True, h11, _workloads(h11, model, bodies)))
    return servers


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 3)


def merge_rounds(levels: list[Level]) -> list[Level]:
    """One level per (server, batching, encoding, concurrency): the median round's throughput,
    CPU and batch, percentiles over the latencies of all rounds, counts summed."""
    from devtune.bench.loadgen import percentile

    groups: dict[tuple[str, bool, str, int], list[Level]] = {}
    for level in levels:
        groups.setdefault((level.server, level.batching, level.encoding, level.concurrency), []).append(level)
    merged = []
    for (server, batching, encoding, concurrency), rounds in groups.items():
        if len(rounds) == 1:
            merged.append(rounds[0])
            continue
        results = [r.result for r in rounds]
        latencies = tuple(ms for r in results for ms in r.latencies_ms)
        result = LevelResult(
            concurrency=concurrency, seconds=round(sum(r.seconds for r in results), 3),
            sent=sum(r.sent for r in results), answered=sum(r.answered for r in results),
            refused_503=sum(r.refused_503 for r in results), errors=sum(r.errors for r in results),
            throughput_rps=round(_median([r.throughput_rps for r in results]), 1),
            p50_ms=percentile(latencies, 50), p90_ms=percentile(latencies, 90), p99_ms=percentile(latencies, 99),
            client_cpu_s=round(sum(r.client_cpu_s for r in results), 3), latencies_ms=latencies,
            warmup_sent=sum(r.warmup_sent for r in results),
        )
        cpu = [r.server_cpu_s for r in rounds]
        cpu_per_request = [r.server_cpu_ms_per_request for r in rounds]
        stages = [r.stages_ms for r in rounds if r.stages_ms is not None]
        merged.append(Level(
            batching=batching, encoding=encoding, result=result,
            mean_batch=round(_median([r.mean_batch for r in rounds]), 2),
            decoder_rps_in_server=round(_median([r.decoder_rps_in_server for r in rounds]), 1),
            server_cpu_s=round(sum(c for c in cpu if c is not None), 3) if None not in cpu else None,
            server_cpu_ms_per_request=_median([c for c in cpu_per_request if c is not None])
            if None not in cpu_per_request else None,
            client_cpu_ms_per_request=_median([r.client_cpu_ms_per_request for r in rounds]),
            server=server,
            stages_ms={k: _median([s[k] for s in stages]) for k in stages[0]} if stages else None,
        ))
    return merged


def _profiles(servers: list[_Server], plan: Plan) -> list[Profile]:
    """With ``plan.profile_dir``: each batching server at concurrency 1 and 32 (or the most measured)
    under py-spy, first encoding only."""
    from devtune.bench.serve.profile import profile_level

    if plan.profile_dir is None:
        return []
    encoding = plan.encodings[0]
    levels = sorted({min(plan.concurrency), 32 if 32 in plan.concurrency else max(plan.concurrency)})
    profiles = []
    for concurrency in levels:
        for server in servers:
            if not server.batching:
                continue
            out = plan.profile_dir / f"{server.name}-{encoding}-c{concurrency}.txt"
            profile = profile_level(server.process, server.workloads[encoding], server.name, encoding, concurrency,
                                    plan.seconds, plan.max_requests, plan.timeout, plan.client, out)
            log.info("profile %-8s c=%-3d %s ms/request: %s", server.name, concurrency,
                     profile.server_cpu_ms_per_request,
                     ", ".join(f"{k} {v:.2f}" for k, v in profile.stages_ms.items()))
            profiles.append(profile)
    return profiles


def levels_and_overload(bundle: Path, model: str, bodies: Bodies, plan: Plan
                        ) -> tuple[list[Level], Overload, list[Profile]]:
    """Every (encoding, concurrency) on every server, the profiles (``--profile``), then the overload
    run on the batching one.

    The baseline and the h11 server are measured on the first encoding only (msgpack by default).
    """
    from devtune.bench.loadgen import closed_loop, open_loop

    levels: list[Level] = []
    with ExitStack() as exits:
        servers = _start_servers(exits, bundle, model, bodies, plan)
        for _ in range(plan.rounds):  # interleaved rounds: a busy spell weighs on every server alike
            for encoding in plan.encodings:
                for concurrency in plan.concurrency:
                    for server in servers:
                        if server.name != "now" and encoding != plan.encodings[0]:
                            continue
                        level = _run_level(server, encoding, concurrency, plan)
                        r = level.result
                        log.info("%-8s batching %-3s %-7s c=%-3d %7.1f req/s  p50 %7.2f  p99 %7.2f ms  "
                                 "batch %5.1f  errors %d  503 %d", server.name, "on" if server.batching else "off",
                                 encoding, concurrency, r.throughput_rps, r.p50_ms, r.p99_ms, level.mean_batch,
                                 r.errors, r.refused_503)
                        levels.append(level)
        levels = merge_rounds(levels)

        profiles = _profiles(servers, plan)

        # Saturation, measured again right before the overload so that both see the same machine.
        encoding = plan.encodings[0]
        best = saturation(levels, encoding)
        batching = servers[0]
        workload = batching.workloads[encoding]
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
        child = batching.process.process
        if child is None or child.poll() is not None:
            raise RuntimeError("the server died during the overload run; see its log above")
    return levels, overload, profiles
