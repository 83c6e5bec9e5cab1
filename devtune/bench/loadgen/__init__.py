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

    clients.py    what is sent (``Workload``) and the two connection pools
    loops.py      closed_loop and open_loop, and what each returns
    probes.py     what the server spent: CPU time from /proc, histograms from /metrics
"""

from __future__ import annotations

from devtune.bench.loadgen.clients import CLIENTS, Client, Lost, Workload
from devtune.bench.loadgen.loops import LevelResult, OpenLoopResult, closed_loop, open_loop, percentile
from devtune.bench.loadgen.probes import (
    process_cpu_seconds,
    process_tree_cpu_seconds,
    scrape_histogram,
    scrape_labelled_histogram,
)

__all__ = [
    "CLIENTS",
    "Client",
    "LevelResult",
    "Lost",
    "OpenLoopResult",
    "Workload",
    "closed_loop",
    "open_loop",
    "percentile",
    "process_cpu_seconds",
    "process_tree_cpu_seconds",
    "scrape_histogram",
    "scrape_labelled_histogram",
]
