"""The targets of `devtune bench serve`, judged on the measured numbers: each says its goal and whether it holds.

Those of "serving at the limit" (issue 14) are ``Target``s, each a measured value against
a threshold::

    vs_baseline        batched throughput at concurrency 32 / the baseline server's, same load
    p99_at_32          batched p99 at concurrency 32 (ms)
    lone_request_p50   p50 at concurrency 1 (ms), at most one bare pass of every decoder + 1.5 ms
    lone_request_cpu   server CPU ms per request at concurrency 1
    served_vs_raw      served throughput at saturation / raw decoders at the same batch size
    body_framing       request body bytes beyond the coded representation, at worst
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from devtune.bench.serve.decoders import DecoderPasses, DecoderRate
    from devtune.bench.serve.levels import Level, Overload
    from devtune.bench.serve.plan import Plan
    from devtune.bench.serve.scaling import TaskCount

__all__ = [
    "BatchingSpeedup",
    "NothingLost",
    "OverheadPaidOnce",
    "ServeTargets",
    "ServedVsRaw",
    "Target",
    "body_framing",
    "evaluate_targets",
    "linear_fit",
]

TARGET_CONCURRENCY = 32  # batching >= TARGET_SPEEDUP x no batching here ...
TARGET_SPEEDUP = 2.0
TARGET_P99_MS = 100.0  # ... with p99 at most this
TARGET_SERVED_VS_RAW = 0.6  # served throughput at saturation / raw decoders at the same batch size
TARGET_OVERHEAD_SHARE = 0.1  # beyond its decoder time, an extra task may cost this share of a
TARGET_VS_BASELINE = 2.0  # batched throughput at TARGET_CONCURRENCY / the baseline server's
TARGET_LONE_EXTRA_MS = 1.5  # p50 at concurrency 1 beyond one bare pass of every decoder
TARGET_LONE_CPU_MS = 2.0  # server CPU per request at concurrency 1
TARGET_FRAMING_BYTES = 40  # request body beyond the coded representation


@dataclass(frozen=True)
class Target:
    """One measured value against its threshold."""

    goal: str
    measured: float
    threshold: float
    basis: str  # the numbers it was computed from
    holds: bool


@dataclass(frozen=True)
class BatchingSpeedup:
    goal: str
    concurrency: int
    batched_rps: float
    unbatched_rps: float
    speedup: float
    batched_p99_ms: float
    holds: bool


@dataclass(frozen=True)
class ServedVsRaw:
    goal: str
    served_rps: float
    concurrency: int
    mean_batch: float
    raw_batch_size: float
    raw_rps: float
    decoder_rps_in_server: float  # the same decoders, sharing the cores
    ratio: float
    holds: bool


@dataclass(frozen=True)
class NothingLost:
    goal: str
    rate_rps: float
    sent: int
    answered: int
    refused_503: int
    lost: int
    errors: int
    max_ms: float
    holds: bool


@dataclass(frozen=True)
class OverheadPaidOnce:
    goal: str
    a_ms: float
    b_ms: float
    decoder_ms_per_task_in_server: float
    single_decoder_pass_ms: float
    decoder_pass_in_turn_ms: float
    holds: bool


Judged = BatchingSpeedup | ServedVsRaw | NothingLost | OverheadPaidOnce | Target


@dataclass(frozen=True)
class ServeTargets:
    batching_speedup: BatchingSpeedup | None  # None when one side of the level was not measured
    served_vs_raw: ServedVsRaw
    overload: NothingLost
    per_request_overhead: OverheadPaidOnce
    vs_baseline: Target | None = None  # None without --baseline-src
    p99_at_32: Target | None = None  # None where that level was not measured
    lone_request_p50: Target | None = None  # None without concurrency 1
    lone_request_cpu: Target | None = None  # ... or where /proc cannot say
    body_framing: Target | None = None

    def named(self) -> dict[str, Judged]:
        """Every target that was judged, by its name in the JSON."""
        targets: dict[str, Judged | None] = {
            "batching_speedup": self.batching_speedup, "served_vs_raw": self.served_vs_raw,
            "overload": self.overload, "per_request_overhead": self.per_request_overhead,
            "vs_baseline": self.vs_baseline, "p99_at_32": self.p99_at_32,
            "lone_request_p50": self.lone_request_p50, "lone_request_cpu": self.lone_request_cpu,
            "body_framing": self.body_framing,
        }
        return {name: target for name, target in targets.items() if target is not None}


def linear_fit(tasks: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares (a, b) of value = a + b * tasks."""
    k, y = np.array(tasks, dtype=float), np.array(values, dtype=float)
    if len(set(k.tolist())) < 2:
        return float(y.mean()), 0.0
    b, a = np.polyfit(k, y, 1)
    return float(a), float(b)


def _batching_speedup(plan: Plan, levels: list[Level], encoding: str) -> BatchingSpeedup | None:
    c = TARGET_CONCURRENCY if TARGET_CONCURRENCY in plan.concurrency else max(plan.concurrency)
    at_c = {r.batching: r for r in levels if r.encoding == encoding and r.concurrency == c and r.server == "now"}
    on, off = at_c.get(True), at_c.get(False)
    if on is None or off is None:
        return None
    speedup = on.throughput_rps / off.throughput_rps if off.throughput_rps else 0.0
    return BatchingSpeedup(
        goal=f"batching >= {TARGET_SPEEDUP}x the throughput of no batching at concurrency {c} "
             f"with p99 <= {TARGET_P99_MS} ms ({encoding})",
        concurrency=c, batched_rps=on.throughput_rps, unbatched_rps=off.throughput_rps,
        speedup=round(speedup, 2), batched_p99_ms=on.result.p99_ms,
        holds=speedup >= TARGET_SPEEDUP and on.result.p99_ms <= TARGET_P99_MS,
    )


def _level(levels: list[Level], encoding: str, concurrency: int, server: str = "now") -> Level | None:
    """The batched level at ``concurrency`` on ``server``, if it was measured."""
    return next((r for r in levels if r.batching and r.encoding == encoding and r.server == server
                 and r.concurrency == concurrency), None)


def _limit_targets(plan: Plan, levels: list[Level], encoding: str, bare_pass_ms: float | None
                   ) -> dict[str, Target]:
    """vs_baseline and p99_at_32 at concurrency 32, lone_request_* at 1: those that were measured."""
    targets: dict[str, Target] = {}
    c = TARGET_CONCURRENCY if TARGET_CONCURRENCY in plan.concurrency else max(plan.concurrency)
    now, base = _level(levels, encoding, c), _level(levels, encoding, c, "baseline")
    if now is not None and base is not None:
        ratio = now.throughput_rps / base.throughput_rps if base.throughput_rps else 0.0
        targets["vs_baseline"] = Target(
            f"batched throughput at concurrency {c} >= {TARGET_VS_BASELINE}x the baseline server's ({encoding})",
            round(ratio, 2), TARGET_VS_BASELINE,
            f"{now.throughput_rps} req/s against {base.throughput_rps} req/s", ratio >= TARGET_VS_BASELINE)
    if now is not None:
        targets["p99_at_32"] = Target(
            f"batched p99 at concurrency {c} <= {TARGET_P99_MS} ms ({encoding})", now.result.p99_ms, TARGET_P99_MS,
            f"{now.result.answered} answers", now.result.p99_ms <= TARGET_P99_MS)
    lone = _level(levels, encoding, 1)
    if lone is not None and bare_pass_ms is not None:
        limit = round(bare_pass_ms + TARGET_LONE_EXTRA_MS, 3)
        targets["lone_request_p50"] = Target(
            f"p50 at concurrency 1 <= one bare pass of every decoder + {TARGET_LONE_EXTRA_MS} ms ({encoding})",
            lone.result.p50_ms, limit, f"bare pass {bare_pass_ms} ms in this process", lone.result.p50_ms <= limit)
    if lone is not None and lone.server_cpu_ms_per_request is not None:
        cpu = lone.server_cpu_ms_per_request
        targets["lone_request_cpu"] = Target(
            f"server CPU per request at concurrency 1 <= {TARGET_LONE_CPU_MS} ms ({encoding})", cpu,
            TARGET_LONE_CPU_MS, f"{lone.server_cpu_s} s over {lone.result.served} requests (warm-up included)", cpu <= TARGET_LONE_CPU_MS)
    return targets


def body_framing(bodies: Sequence[bytes], coded_bytes: Sequence[int]) -> Target:
    """The request body beyond the coded representation, at worst over the bodies sent."""
    framing = [len(body) - coded for body, coded in zip(bodies, coded_bytes)]
    worst = max(framing)
    return Target(
        f"request body <= the coded representation + {TARGET_FRAMING_BYTES} bytes (protocol as DeviceClient sends)",
        worst, TARGET_FRAMING_BYTES,
        f"mean body {np.mean([len(b) for b in bodies]):.1f} B for {np.mean(coded_bytes):.1f} coded B",
        worst <= TARGET_FRAMING_BYTES)


def evaluate_targets(plan: Plan, levels: list[Level], raw_at_saturation: DecoderRate, overload: Overload,
                     scaling: list[TaskCount], passes: DecoderPasses, bare_pass_ms: float | None = None,
                     framing: Target | None = None) -> ServeTargets:
    """Every target on the measured numbers; ``bare_pass_ms``: one pass of every decoder at batch 1."""
    from devtune.bench.serve.levels import saturation

    encoding = plan.encodings[0]
    best = saturation(levels, encoding)
    ratio = best.throughput_rps / raw_at_saturation.throughput_rps
    served = ServedVsRaw(
        goal=f"served throughput at saturation >= {TARGET_SERVED_VS_RAW} x the raw decoder throughput "
             f"at the same batch size ({encoding})",
        served_rps=best.throughput_rps, concurrency=best.concurrency, mean_batch=best.mean_batch,
        raw_batch_size=raw_at_saturation.batch_size, raw_rps=raw_at_saturation.throughput_rps,
        decoder_rps_in_server=best.decoder_rps_in_server, ratio=round(ratio, 3), holds=ratio >= TARGET_SERVED_VS_RAW,
    )
    o = overload.result
    nothing_lost = NothingLost(
        goal=f"at {overload.factor}x the saturating rate nothing is lost or timed out (refusals are 503s)",
        rate_rps=o.rate_rps, sent=o.sent, answered=o.answered, refused_503=o.refused_503, lost=o.lost,
        errors=o.errors, max_ms=o.max_ms, holds=o.lost == 0 and o.errors == 0,
    )
    counts = [r.tasks for r in scaling]
    a, b = linear_fit(counts, [r.p50_ms for r in scaling])
    _, decoder_b = linear_fit(counts, [r.decoder_ms_in_server for r in scaling])
    # An extra task should cost its decoder pass (as the server measured it, weights coming
    # back into the cache included) and its share of the answer, not another round of HTTP,
    # parsing and queueing: those belong in a, paid once.
    overhead = OverheadPaidOnce(
        goal=f"per-request overhead paid once: p50 = a + b * tasks with b at most the decoder time per task "
             f"in the server plus {TARGET_OVERHEAD_SHARE} a",
        a_ms=round(a, 3), b_ms=round(b, 3), decoder_ms_per_task_in_server=round(decoder_b, 3),
        single_decoder_pass_ms=passes.single_ms, decoder_pass_in_turn_ms=passes.in_turn_ms,
        holds=b <= decoder_b + TARGET_OVERHEAD_SHARE * a,
    )
    return ServeTargets(_batching_speedup(plan, levels, encoding), served, nothing_lost, overhead,
                        **_limit_targets(plan, levels, encoding, bare_pass_ms), body_framing=framing)
