"""The targets of `devtune bench serve`, judged on the measured numbers: each says its goal and whether it holds."""

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
    "evaluate_targets",
    "linear_fit",
]

TARGET_CONCURRENCY = 32  # batching >= TARGET_SPEEDUP x no batching here ...
TARGET_SPEEDUP = 2.0
TARGET_P99_MS = 100.0  # ... with p99 at most this
TARGET_SERVED_VS_RAW = 0.5  # served throughput at saturation / raw decoders at the same batch size
TARGET_OVERHEAD_SHARE = 0.1  # beyond its decoder time, an extra task may cost this share of a


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


@dataclass(frozen=True)
class ServeTargets:
    batching_speedup: BatchingSpeedup | None  # None when one side of the level was not measured
    served_vs_raw: ServedVsRaw
    overload: NothingLost
    per_request_overhead: OverheadPaidOnce

    def named(self) -> dict[str, BatchingSpeedup | ServedVsRaw | NothingLost | OverheadPaidOnce]:
        """Every target that was judged, by its name in the JSON."""
        targets = {"batching_speedup": self.batching_speedup, "served_vs_raw": self.served_vs_raw,
                   "overload": self.overload, "per_request_overhead": self.per_request_overhead}
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
    at_c = {r.batching: r for r in levels if r.encoding == encoding and r.concurrency == c}
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


def evaluate_targets(plan: Plan, levels: list[Level], raw_at_saturation: DecoderRate, overload: Overload,
                     scaling: list[TaskCount], passes: DecoderPasses) -> ServeTargets:
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
    return ServeTargets(_batching_speedup(plan, levels, encoding), served, nothing_lost, overhead)
