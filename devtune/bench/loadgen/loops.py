"""Closed-loop levels and open-loop runs over a pool of connections, each bounded in time and requests.

    closed loop   N workers, each sends its next request when the last one is answered:
                  the throughput the server sustains at concurrency N, and its latency
    open loop     one request every 1/rate s whatever the server does (a scheduler, not
                  workers), so a slow server cannot slow the offered load down
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from devtune.bench.loadgen.clients import Client, Lost, Workload, open_pool

__all__ = ["LevelResult", "OpenLoopResult", "closed_loop", "open_loop", "percentile"]


@dataclass(frozen=True)
class LevelResult:
    """One closed-loop level."""

    concurrency: int
    seconds: float  # measured wall time (after the warm-up)
    sent: int
    answered: int  # 200
    refused_503: int
    errors: int  # any other status, timeouts and connection errors
    throughput_rps: float  # answered / seconds
    p50_ms: float
    p90_ms: float
    p99_ms: float
    client_cpu_s: float  # CPU this process used during the level (all threads)
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)  # of answered requests, to pool runs
    warmup_sent: int = 0  # requests of the warm-up before it: a server's CPU counted over both serves them all

    @property
    def served(self) -> int:
        """Requests the server handled from the start of the warm-up: what its CPU time covers."""
        return self.sent + self.warmup_sent


@dataclass(frozen=True)
class OpenLoopResult:
    """One open-loop run; ``sent == answered + refused_503 + lost + errors``."""

    rate_rps: float  # offered
    seconds: float  # from the first send until the last answer or timeout
    sent: int
    answered: int  # 200
    refused_503: int
    lost: int  # timeouts and connection errors: no answer at all
    errors: int  # answers with any other status
    retry_after: bool  # every 503 carried a Retry-After header (False when there was none)
    p50_ms: float  # of answered requests, from when each was due
    p99_ms: float
    max_ms: float  # slowest answer of any kind (200 or 503)
    send_lag_ms: float  # how far behind schedule the client fell at worst


def percentile(latencies: Sequence[float], q: float) -> float:
    """The q-th percentile in ms, rounded to the microsecond; 0 when there is nothing."""
    return round(float(np.percentile(latencies, q)), 3) if latencies else 0.0


async def _closed(
    post: Callable[[int], Awaitable[tuple[int, bool]]], concurrency: int, seconds: float, budget: int
) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    counts = {"sent": 0, "answered": 0, "refused_503": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        while counts["sent"] < budget and time.perf_counter() < deadline:
            counts["sent"] += 1
            sent = time.perf_counter()
            try:
                status, _ = await post(i)
            except Lost:
                counts["errors"] += 1
                continue
            finally:
                i += concurrency
            if status == 200:
                counts["answered"] += 1
                latencies.append((time.perf_counter() - sent) * 1000)
            elif status == 503:
                counts["refused_503"] += 1
            else:
                counts["errors"] += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return latencies, counts


async def _closed_loop(
    workload: Workload, concurrency: int, seconds: float, max_requests: int, warmup_s: float, timeout: float,
    client: Client,
) -> LevelResult:
    pool = open_pool(client, workload, concurrency, timeout)
    try:
        warmup = {"sent": 0}
        if warmup_s > 0:  # open the connections, let the server reach its steady state
            _, warmup = await _closed(pool.post, concurrency, warmup_s, max(concurrency * 4, max_requests // 10))
        cpu, started = time.process_time(), time.perf_counter()
        latencies, counts = await _closed(pool.post, concurrency, seconds, max_requests)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        await pool.aclose()
    return LevelResult(
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        sent=counts["sent"],
        answered=counts["answered"],
        refused_503=counts["refused_503"],
        errors=counts["errors"],
        throughput_rps=round(counts["answered"] / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        client_cpu_s=round(cpu, 3),
        latencies_ms=tuple(latencies),
        warmup_sent=warmup["sent"],
    )


def closed_loop(
    workload: Workload,
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup_s: float = 0.3,
    timeout: float = 10.0,
    client: Client = "raw",
) -> LevelResult:
    """``concurrency`` requests in flight for ``seconds`` (or ``max_requests``), after a warm-up."""
    if concurrency < 1 or seconds <= 0 or max_requests < 1 or timeout <= 0:
        raise ValueError(
            f"concurrency ({concurrency}), seconds ({seconds}), max_requests ({max_requests}) and "
            f"timeout ({timeout}) must be positive"
        )
    return asyncio.run(_closed_loop(workload, concurrency, seconds, max_requests, warmup_s, timeout, client))


# ---------------------------------------------------------------- open loop


async def _open_loop(
    workload: Workload, rate: float, seconds: float, max_requests: int, connections: int, timeout: float,
    client: Client,
) -> OpenLoopResult:
    total = min(max_requests, max(1, round(rate * seconds)))
    counts = {"answered": 0, "refused_503": 0, "lost": 0, "errors": 0, "without_retry_after": 0}
    latencies: list[float] = []
    slowest = 0.0
    pool = open_pool(client, workload, connections, timeout)

    async def send(i: int, due: float) -> None:
        nonlocal slowest
        try:
            status, retry_after = await pool.post(i)
        except Lost:
            counts["lost"] += 1
            return
        elapsed = (time.perf_counter() - due) * 1000
        slowest = max(slowest, elapsed)
        if status == 200:
            counts["answered"] += 1
            latencies.append(elapsed)
        elif status == 503:
            counts["refused_503"] += 1
            counts["without_retry_after"] += not retry_after
        else:
            counts["errors"] += 1

    tasks: list[asyncio.Task[None]] = []
    lag = 0.0
    started = time.perf_counter()
    try:
        for i in range(total):
            due = started + i / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            tasks.append(asyncio.create_task(send(i, due)))
        await asyncio.gather(*tasks)  # each is bounded by the timeout
    finally:
        await pool.aclose()
    elapsed = time.perf_counter() - started
    return OpenLoopResult(
        rate_rps=round(rate, 1),
        seconds=round(elapsed, 3),
        sent=total,
        answered=counts["answered"],
        refused_503=counts["refused_503"],
        lost=counts["lost"],
        errors=counts["errors"],
        retry_after=counts["refused_503"] > 0 and counts["without_retry_after"] == 0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=round(slowest, 3),
        send_lag_ms=round(lag * 1000, 3),
    )


def open_loop(
    workload: Workload,
    rate: float,
    seconds: float,
    max_requests: int,
    connections: int = 256,
    timeout: float = 10.0,
    client: Client = "raw",
) -> OpenLoopResult:
    """Send at a fixed ``rate`` for ``seconds`` (at most ``max_requests``), then wait for every answer."""
    if rate <= 0 or seconds <= 0 or max_requests < 1 or connections < 1 or timeout <= 0:
        raise ValueError(
            f"rate ({rate}), seconds ({seconds}), max_requests ({max_requests}), connections "
            f"({connections}) and timeout ({timeout}) must be positive"
        )
    return asyncio.run(_open_loop(workload, rate, seconds, max_requests, connections, timeout, client))
