"""A bounded HTTP load generator: closed-loop levels and an open-loop overload run.

Bodies are encoded once, before the clock starts, and replayed round robin, so the
client spends its CPU on HTTP only: on a small machine it shares the cores with the
server it measures. Every run stops by itself, at a deadline and after a request
budget, and every request has a timeout::

    closed loop   N workers, each sends its next request when the last one is answered:
                  the throughput the server sustains at concurrency N, and its latency
    open loop     one request every 1/rate s whatever the server does (a scheduler, not
                  workers), so a slow server cannot slow the offered load down; counts
                  answered, refused (503) and lost (timeouts, connection errors)

Two clients, each with a connection pool sized to the concurrency:

    raw     (default) keep-alive HTTP/1.1 on asyncio streams, each request built to the
            byte before the clock starts; about 0.06 ms of CPU a request
    httpx   one ``httpx.AsyncClient``; a cross-check, but its pool costs 1.8 ms of CPU a
            request at concurrency 1 and 3 ms at 32 on the 2-core bench machine, more
            than the server it measures (docs/serving.md)

Latency runs from the moment a request was sent (closed loop) or due (open loop) to
the end of its answer; percentiles are over answered (200) requests only.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np

__all__ = [
    "CLIENTS",
    "Client",
    "LevelResult",
    "OpenLoopResult",
    "Workload",
    "closed_loop",
    "open_loop",
    "percentile",
    "process_cpu_seconds",
    "scrape_histogram",
]

Client = Literal["raw", "httpx"]
CLIENTS: tuple[Client, ...] = ("raw", "httpx")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_IDLE_S = 4.0  # reopen a connection idle this long: uvicorn closes idle ones after 5 s
_T = TypeVar("_T")


@dataclass(frozen=True)
class Workload:
    """What to send: one URL, its headers, and pre-encoded bodies replayed round robin."""

    url: str
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bodies:
            raise ValueError("a workload needs at least one request body; encode some samples first")
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http://host:port/path, not {self.url!r}")

    def requests(self) -> list[bytes]:
        """Each body as a complete HTTP/1.1 request, headers and all."""
        parts = urlsplit(self.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"Host: {parts.netloc}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        head = f"POST {target or '/'} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)
        return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body for body in self.bodies]


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


class Lost(Exception):
    """No answer: a timeout, a refused or broken connection."""


# ---------------------------------------------------------------- the clients


async def _within(timeout: float, work: Awaitable[_T]) -> _T:
    if sys.version_info >= (3, 11):  # a deadline on the running task, no extra task per request
        async with asyncio.timeout(timeout):
            return await work
    return await asyncio.wait_for(work, timeout)


class _Connection:
    """One keep-alive HTTP/1.1 connection: write a pre-built request, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """(status, whether a Retry-After header came) of one request."""
        self.reusable = False  # until the whole answer has been read
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            await self.reader.readexactly(int(head[at + 17 : head.index(b"\r\n", at + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in head:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")  # no trailers
        else:
            raise Lost("answer without Content-Length or chunked encoding")
        self.used = time.monotonic()
        self.reusable = b"\r\nconnection: close" not in head
        return status, b"\r\nretry-after:" in head

    def close(self) -> None:
        self.writer.close()


class _RawPool:
    """At most ``size`` connections to one server, reused last-in first-out."""

    def __init__(self, workload: Workload, size: int, timeout: float) -> None:
        parts = urlsplit(workload.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.requests = workload.requests()
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def post(self, i: int) -> tuple[int, bool]:
        try:
            return await _within(self.timeout, self._post(self.requests[i % len(self.requests)]))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError) as exc:
            raise Lost(repr(exc)) from exc

    async def _post(self, request: bytes) -> tuple[int, bool]:
        async with self._slots:  # waiting for a connection counts against the timeout
            connection = None
            while self._idle and connection is None:
                connection = self._idle.pop()
                if time.monotonic() - connection.used > _IDLE_S:
                    connection.close()
                    connection = None
            connection = connection or await _Connection.open(self.host, self.port)
            try:
                answer = await connection.exchange(request)
            finally:
                if connection.reusable:
                    self._idle.append(connection)
                else:
                    connection.close()
            return answer

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class _HttpxPool:
    """The same, through one ``httpx.AsyncClient``."""

    def __init__(self, workload: Workload, size: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        # the pool wait counts against the timeout too
        self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False)
        self.workload = workload

    async def post(self, i: int) -> tuple[int, bool]:
        bodies = self.workload.bodies
        try:
            answer = await self.client.post(self.workload.url, content=bodies[i % len(bodies)],
                                            headers=self.workload.headers)
        except httpx.HTTPError as exc:
            raise Lost(repr(exc)) from exc
        return answer.status_code, "retry-after" in answer.headers

    async def aclose(self) -> None:
        await self.client.aclose()


def _pool(client: Client, workload: Workload, size: int, timeout: float) -> _RawPool | _HttpxPool:
    if client == "raw":
        return _RawPool(workload, size, timeout)
    if client == "httpx":
        return _HttpxPool(workload, size, timeout)
    raise ValueError(f"unknown client {client!r}; choose one of {CLIENTS}")


# ---------------------------------------------------------------- closed loop


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
    pool = _pool(client, workload, concurrency, timeout)
    try:
        if warmup_s > 0:  # open the connections, let the server reach its steady state
            await _closed(pool.post, concurrency, warmup_s, max(concurrency * 4, max_requests // 10))
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
    pool = _pool(client, workload, connections, timeout)

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


# ---------------------------------------------------------------- what the server spent


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def scrape_histogram(metrics_text: str, name: str) -> tuple[float, float]:
    """(sum, count) of an unlabelled Prometheus histogram in a /metrics page."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return total, count
