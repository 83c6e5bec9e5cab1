"""The decoders alone, in this process, as the server runs them (ONNX Runtime, 1 thread).

Their throughput at each batch size is the ceiling the server is held to; one pass at
batch 1 is the least an extra task can cost a request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DecoderPasses", "DecoderRate", "decoder_passes", "raw_at", "raw_decoders"]


@dataclass(frozen=True)
class DecoderRate:
    """One pass of every task's decoder at one batch size."""

    batch_size: float  # measured sizes are whole; interpolated ones need not be
    throughput_rps: float  # samples/s
    pass_ms: float  # one pass of every decoder over the batch


@dataclass(frozen=True)
class DecoderPasses:
    """Median ms of one decoder pass at batch 1."""

    single_ms: float  # one session again and again: the least a task can cost
    in_turn_ms: float  # every task in turn, as a request for many runs them, weights coming back into the cache


def _rate(batch: float, samples_per_s: float) -> DecoderRate:
    return DecoderRate(batch, round(samples_per_s, 1), round(batch / samples_per_s * 1000, 3))


def raw_decoders(bundle: Path, symbols: np.ndarray, batch_sizes: Sequence[int], seconds: float, rounds: int = 3
                 ) -> list[DecoderRate]:
    """Samples/s of one pass of every task's decoder at each batch size (threads=1, as served).

    Measured in ``rounds`` interleaved rounds and reported as the median round, so that
    a busy spell of other work on the machine does not fall on one batch size only.
    """
    from cloud_server.runtime import CloudBundle
    from shared.quantization import dequantize

    cloud = CloudBundle(bundle, threads=1)
    cloud.warm_up()
    inputs = {size: dequantize(symbols[np.arange(size) % len(symbols)], cloud.manifest.representation.quant)
              for size in batch_sizes}  # (B, N, C) each
    rates: dict[int, list[float]] = {size: [] for size in batch_sizes}
    for _ in range(rounds):
        for size, z in inputs.items():
            passes, started = 0, time.perf_counter()
            while passes < 2 or time.perf_counter() - started < seconds / rounds:
                for task in cloud.task_names:
                    cloud.run(task, z)
                passes += 1
            rates[size].append(passes * size / (time.perf_counter() - started))
    return [_rate(size, float(np.median(rates[size]))) for size in batch_sizes]


def raw_at(raw: list[DecoderRate], batch: float) -> DecoderRate:
    """Raw throughput at ``batch`` samples, interpolated in log(batch size) between measured sizes."""
    sizes = [float(r.batch_size) for r in raw]
    rate = float(np.interp(np.log(batch), np.log(sizes), [r.throughput_rps for r in raw]))
    return _rate(round(batch, 2), rate)


def decoder_passes(bundle: Path, tasks: Sequence[str], symbols: np.ndarray, rounds: int = 30) -> DecoderPasses:
    """Median ms of one decoder pass at batch 1: one session again and again, and all of ``tasks`` in turn.

    The first is the least a task can cost; the second what it costs in a request that
    asks for many, when each decoder's weights have to come back into the cache.
    """
    from cloud_server.runtime import CloudBundle
    from shared.quantization import dequantize

    cloud = CloudBundle(bundle, threads=1)
    z = dequantize(symbols[:1], cloud.manifest.representation.quant)
    cloud.warm_up()
    hot, rotating = [], []
    for _ in range(rounds):
        for _ in range(len(tasks)):
            started = time.perf_counter()
            cloud.run(tasks[0], z)
            hot.append(time.perf_counter() - started)
        started = time.perf_counter()
        for task in tasks:
            cloud.run(task, z)
        rotating.append((time.perf_counter() - started) / len(tasks))
    return DecoderPasses(round(float(np.median(hot)) * 1000, 4), round(float(np.median(rotating)) * 1000, 4))
