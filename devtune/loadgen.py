"""A bounded HTTP load generator: closed-loop levels and an open-loop overload run.

Both replay request bodies that were encoded once, before the clock starts, so the
client spends its CPU on HTTP only (on a small machine it shares the cores with the
server it measures). One ``httpx.AsyncClient`` per run, its connection pool sized to
the concurrency. Every run stops by itself: at a deadline and after a request budget,
and every request has a timeout::

    closed loop   N workers, each sends its next request when the last one is answered;
                  the throughput the server sustains at concurrency N, and its latency
    open loop     one request every 1/rate s whatever the server does (a scheduler, not
                  workers), so a slow server cannot slow the offered load down; counts
                  answered, refused (503) and lost (timeouts, connection errors)

Latency is measured from the moment a request was due (open loop) or sent (closed
loop) to the end of its answer; percentiles are over answered (200) requests only.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

__all__ = [
    "LevelResult",
    "OpenLoopResult",
    "Workload",
    "closed_loop",
    "open_loop",
    "process_cpu_seconds",
    "scrape_histogram",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Workload:
    """What to send: one URL, its headers, and pre-encoded bodies replayed round robin."""

    url: str
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bodies:
            raise ValueError("a workload needs at least one request body; encode some samples first")


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
    retry_after: bool  # every 503 carried a Retry-After header
    p50_ms: float  # of answered requests, from when each was due
    p99_ms: float
    max_ms: float  # slowest answer of any kind (200 or 503)
    send_lag_ms: float  # how far behind schedule the client fell at worst


def _percentile(latencies: list[float], q: float) -> float:
    return round(float(np.percentile(latencies, q)), 3) if latencies else 0.0


def _client(connections: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # The pool wait counts against the timeout too, so a client short of connections
    # shows up as lost requests rather than as an unbounded wait.
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False)


async def _closed(
    client: httpx.AsyncClient,
    workload: Workload,
    concurrency: int,
    seconds: float,
    budget: int,
    record: bool,
) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    counts = {"sent": 0, "answered": 0, "refused_503": 0, "errors": 0}
    deadline = time.perf_counter() + seconds
    bodies, headers, url = workload.bodies, workload.headers, workload.url

    async def worker(start: int) -> None:
        i = start
        while counts["sent"] < budget and time.perf_counter() < deadline:
            counts["sent"] += 1
            body = bodies[i % len(bodies)]
            i += concurrency
            sent = time.perf_counter()
            try:
                answer = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                counts["errors"] += 1
                continue
            if answer.status_code == 200:
                counts["answered"] += 1
                if record:
                    latencies.append((time.perf_counter() - sent) * 1000)
            elif answer.status_code == 503:
                counts["refused_503"] += 1
            else:
                counts["errors"] += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return latencies, counts


async def _closed_loop(
    workload: Workload, concurrency: int, seconds: float, max_requests: int, warmup_s: float, timeout: float
) -> LevelResult:
    async with _client(concurrency, timeout) as client:
        # Warm-up: open the connections and let the server reach its steady state.
        await _closed(client, workload, concurrency, warmup_s, max(concurrency * 4, 1), record=False)
        cpu, started = time.process_time(), time.perf_counter()
        latencies, counts = await _closed(client, workload, concurrency, seconds, max_requests, record=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return LevelResult(
        concurrency=concurrency,
        seconds=round(elapsed, 3),
        sent=counts["sent"],
        answered=counts["answered"],
        refused_503=counts["refused_503"],
        errors=counts["errors"],
        throughput_rps=round(counts["answered"] / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        client_cpu_s=round(cpu, 3),
    )


def closed_loop(
    workload: Workload,
    concurrency: int,
    seconds: float,
    max_requests: int,
    warmup_s: float = 0.3,
    timeout: float = 10.0,
) -> LevelResult:
    """``concurrency`` requests in flight for ``seconds`` (or ``max_requests``), after a warm-up."""
    if concurrency < 1 or seconds <= 0 or max_requests < 1:
        raise ValueError(
            f"concurrency ({concurrency}), seconds ({seconds}) and max_requests ({max_requests}) must be positive"
        )
    return asyncio.run(_closed_loop(workload, concurrency, seconds, max_requests, warmup_s, timeout))


async def _open_loop(
    workload: Workload, rate: float, seconds: float, max_requests: int, connections: int, timeout: float
) -> OpenLoopResult:
    total = min(max_requests, max(1, round(rate * seconds)))
    counts = {"answered": 0, "refused_503": 0, "lost": 0, "errors": 0}
    latencies: list[float] = []
    slowest = [0.0]
    retry_after = [True]
    bodies, headers, url = workload.bodies, workload.headers, workload.url

    async with _client(connections, timeout) as client:

        async def send(body: bytes, due: float) -> None:
            try:
                answer = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:  # timeouts (pool, connect, read) and connection errors
                counts["lost"] += 1
                return
            elapsed = (time.perf_counter() - due) * 1000
            slowest[0] = max(slowest[0], elapsed)
            if answer.status_code == 200:
                counts["answered"] += 1
                latencies.append(elapsed)
            elif answer.status_code == 503:
                counts["refused_503"] += 1
                retry_after[0] = retry_after[0] and "retry-after" in answer.headers
            else:
                counts["errors"] += 1

        tasks: list[asyncio.Task[None]] = []
        lag = 0.0
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            tasks.append(asyncio.create_task(send(bodies[i % len(bodies)], due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started

    return OpenLoopResult(
        rate_rps=round(rate, 1),
        seconds=round(elapsed, 3),
        sent=total,
        answered=counts["answered"],
        refused_503=counts["refused_503"],
        lost=counts["lost"],
        errors=counts["errors"],
        retry_after=retry_after[0] if counts["refused_503"] else False,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        max_ms=round(slowest[0], 3),
        send_lag_ms=round(lag * 1000, 3),
    )


def open_loop(
    workload: Workload,
    rate: float,
    seconds: float,
    max_requests: int,
    connections: int = 256,
    timeout: float = 10.0,
) -> OpenLoopResult:
    """Send at a fixed ``rate`` for ``seconds`` (at most ``max_requests``), then wait for every answer."""
    if rate <= 0 or seconds <= 0 or max_requests < 1 or connections < 1:
        raise ValueError(
            f"rate ({rate}), seconds ({seconds}), max_requests ({max_requests}) and connections "
            f"({connections}) must be positive"
        )
    return asyncio.run(_open_loop(workload, rate, seconds, max_requests, connections, timeout))


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)


def scrape_histogram(metrics_text: str, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled Prometheus histogram in a /metrics page."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return total, count
