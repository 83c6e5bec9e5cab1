"""Where a request's time goes in the real server: py-spy samples it under a closed loop.

``py-spy record`` (a sampling profiler that reads the process from outside, so the
server runs unchanged; ``pip install py-spy``) takes the stacks of every busy thread of
the server process while the load generator keeps ``concurrency`` requests in flight.
Each stack is put in the first stage of ``STAGES`` one of whose needles it holds, and
a stage's share of the samples times the server's CPU ms per request (from /proc over
the same window) is its ms per request. Samples of a thread that waits for a core
count as busy, so on a loaded machine the shares, not the sample counts, are what to read.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtune.bench.loadgen import Client, Workload
    from devtune.server_process import ServerProcess

__all__ = ["STAGES", "Profile", "classify", "profile_level", "stage_shares"]

RATE_HZ = 200  # samples per second per thread

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decoder passes", ("Session.run (onnxruntime",)),
    ("batch assembly", ("Batcher._compute",)),  # concatenating the rows, slicing the outputs
    ("entropy decode", ("shared/entropy/", "shared/codecs/")),
    ("unpack + validate", ("unpack_request", "check_content_type", "_from_v1", "_from_v2")),
    ("dequantize + checks", ("CloudBundle.decode", "decode_symbols", "dequantize")),
    ("answer building", ("_answer", "pack_response", "to_predictions")),
    # FastAPI's OpenTelemetry bridge asking whether it is on (its middleware frames are in every stack)
    ("telemetry check", ("NativeTelemetry.enabled", "get_tracer_provider", "get_meter_provider",
                         "get_logger_provider")),
    ("body read", ("read_body",)),
    ("HTTP protocol", ("HttpToolsProtocol.", "H11Protocol.", "RequestResponseCycle.send",
                       "RequestResponseCycle.receive", "h11/")),
    ("app + middleware", ("run_asgi",)),  # routing, dependencies, middleware, metrics: the rest of the app
    ("batcher", ("Batcher.",)),
    ("thread hand-off", ("concurrent/futures/thread.py", "threading.py")),
    ("event loop", ("Runner.run", "asyncio/", "uvloop")),
)
OTHER = "other"


@dataclass(frozen=True)
class Profile:
    """One profiled closed-loop run on one server."""

    server: str
    encoding: str
    concurrency: int
    throughput_rps: float  # under the profiler, which costs the server a little
    samples: int
    server_cpu_ms_per_request: float | None
    stages_ms: dict[str, float]  # ms per request by stage (share x CPU ms per request), largest first
    stages_share: dict[str, float]  # share of the samples by stage


def classify(stack: str) -> str:
    """The stage of one collapsed stack (frames joined by ';', root first)."""
    for stage, needles in STAGES:
        if any(needle in stack for needle in needles):
            return stage
    return OTHER


def stage_shares(collapsed: str) -> tuple[dict[str, float], int]:
    """Share of samples by stage, and the number of samples, of py-spy's raw (collapsed) output."""
    counts: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stage = classify(stack)
        counts[stage] = counts.get(stage, 0) + int(count)
    total = sum(counts.values())
    shares = {stage: n / total for stage, n in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}
    return shares, total


def profile_level(process: ServerProcess, workload: Workload, server: str, encoding: str, concurrency: int,
                  seconds: float, max_requests: int, timeout: float, client: Client, out: Path) -> Profile:
    """Record ``process`` with py-spy during a closed loop at ``concurrency``; collapsed stacks go to ``out``."""
    from devtune.bench.loadgen import closed_loop, process_cpu_seconds

    spy = shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("--profile needs py-spy on PATH: pip install py-spy (a sampling profiler)")
    if process.process is None:
        raise RuntimeError("the server to profile is not running")
    pid = process.process.pid
    closed_loop(workload, concurrency, min(1.0, seconds), max_requests, 0.0, timeout, client)  # steady state first
    out.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking",
         "--duration", str(max(1, round(seconds + 1))), "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # py-spy attaches
    cpu = process_cpu_seconds(pid)
    result = closed_loop(workload, concurrency, seconds, max_requests, 0.0, timeout, client)
    cpu_after = process_cpu_seconds(pid)
    _, errors = recorder.communicate(timeout=seconds + 30)
    if recorder.returncode != 0 or not out.is_file():
        raise RuntimeError(f"py-spy could not record the server (it may need ptrace rights, e.g. "
                           f"--cap-add SYS_PTRACE in a container): {errors.decode(errors='replace')[-500:]}")
    shares, samples = stage_shares(out.read_text())
    per_request = (cpu_after - cpu) / result.sent * 1000 if cpu is not None and cpu_after is not None and result.sent \
        else None
    return Profile(
        server=server, encoding=encoding, concurrency=concurrency, throughput_rps=result.throughput_rps,
        samples=samples, server_cpu_ms_per_request=round(per_request, 3) if per_request is not None else None,
        stages_ms={k: round(v * per_request, 3) for k, v in shares.items()} if per_request is not None else {},
        stages_share={k: round(v, 4) for k, v in shares.items()},
    )
