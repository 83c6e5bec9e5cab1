"""What one `devtune bench serve` run does, every choice resolved: ``Plan``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtune.bench.loadgen import Client
    from devtune.server_process import Stack

__all__ = ["BATCH_ON", "Plan"]

BATCH_ON = 64  # max_batch_size with batching on; 1 turns it off


@dataclass(frozen=True)
class Plan:
    """Everything one run does, resolved from the flags."""

    concurrency: list[int]
    seconds: float  # per level
    warmup_s: float  # per level, not measured
    max_requests: int  # per level
    encodings: list[str]
    overload_seconds: float
    task_counts: list[int]
    task_rounds: int  # the task counts are measured in this many interleaved rounds ...
    task_seconds: float  # ... of this long each
    raw_seconds: float  # per batch size
    client: Client
    timeout: float
    delay_ms: float  # server max_queue_delay_ms with batching on
    max_queue: int  # server max_queue: waiting requests beyond it are refused with 503
    overload_factor: float  # offered rate / saturating rate
    connections: int  # client connections in the overload run
    baseline_src: Path | None = None  # an older source tree whose server runs side by side ("baseline")
    baseline_stack: Stack = "h11"  # the baseline's HTTP stack: h11 is what an install before uvloop got
    baseline_protocol: int = 1  # the request protocol it is sent: 1 for a tree before protocol v2
    compare_stack: bool = False  # also this tree's server on asyncio and h11 ("now-h11")
    rounds: int = 1  # the levels are measured in this many interleaved rounds (medians, pooled latencies)
    workers_counts: tuple[int, ...] = ()  # server processes to compare (workers.py); empty: none
    workers_concurrency: int = 32  # ... at this concurrency
    profile_dir: Path | None = None  # py-spy profiles of each batching server go here (profile.py)
