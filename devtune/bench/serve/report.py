"""What `devtune bench serve` shows: the JSON object (`--json`, and --out) and the table."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from devtune.bench.serve.levels import Level
from devtune.bench.serve.plan import BATCH_ON
from devtune.bench.serve.sweep import ServeReport
from devtune.bench.serve.targets import Target

__all__ = ["render_table", "report_json"]

NOTE = ("the load generator, the servers and any other jobs share this machine's cores: "
        "client_cpu_ms_per_request and server_cpu_ms_per_request show the split, loadavg the rest")


def _level_json(level: Level) -> dict[str, Any]:
    result = asdict(level.result)
    del result["latencies_ms"]  # kept for pooling runs, not for the report
    return {
        "server": level.server, "batching": level.batching, "encoding": level.encoding, **result,
        "mean_batch": level.mean_batch, "decoder_rps_in_server": level.decoder_rps_in_server,
        "server_cpu_s": level.server_cpu_s, "server_cpu_ms_per_request": level.server_cpu_ms_per_request,
        "client_cpu_ms_per_request": level.client_cpu_ms_per_request, "stages_ms": level.stages_ms,
    }


def report_json(report: ServeReport) -> dict[str, Any]:
    """The JSON object `--json` prints: plain types, stable key names."""
    plan = asdict(report.plan)
    del plan["overload_factor"], plan["connections"]  # "overload" has them, as factor and connections
    delay_ms, max_queue = plan.pop("delay_ms"), plan.pop("max_queue")
    plan = {k: str(v) if isinstance(v, Path) else v for k, v in plan.items()}  # baseline_src, profile_dir
    config = {**plan, "max_batch_size_on": BATCH_ON, "delay_ms": delay_ms, "max_queue": max_queue, "threads": 1}
    overload = asdict(report.overload)
    return {
        "bundle": asdict(report.bundle),
        "config": config,
        "machine": asdict(report.machine),
        "note": NOTE,
        "levels": [_level_json(level) for level in report.levels],
        "raw_decoder": [asdict(r) for r in report.raw_decoder],
        "overload": {**{k: v for k, v in overload.items() if k != "result"}, **overload["result"]},
        "tasks_scaling": [asdict(r) for r in report.tasks_scaling],
        "targets": {name: asdict(target) for name, target in report.targets.named().items()},
        "profiles": [asdict(p) for p in report.profiles],
        "workers_scaling": [asdict(w) for w in report.workers_scaling],
        "seconds": report.seconds,
    }


def render_table(report: ServeReport) -> str:
    header = "server   batching encoding  conc   req/s    p50 ms   p90 ms   p99 ms  batch  err  503  "
    lines = [header + "server/client CPU ms"]
    for level in report.levels:
        r = level.result
        lines.append(f"{level.server:<8} {'on' if level.batching else 'off':<8} {level.encoding:<8} {r.concurrency:>5} "
                     f"{r.throughput_rps:>7.1f} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.p99_ms:>8.2f} "
                     f"{level.mean_batch:>6.1f} {r.errors:>4} {r.refused_503:>4}  "
                     f"{level.server_cpu_ms_per_request or 0:>6.2f} / {level.client_cpu_ms_per_request:.2f}")
    lines.append("")
    lines.append("raw decoders, all tasks, samples/s: " + ", ".join(
        f"B={r.batch_size} {r.throughput_rps:.0f}" for r in report.raw_decoder))
    o = report.overload.result
    lines.append(f"overload at {o.rate_rps:.0f} req/s for {report.plan.overload_seconds} s: sent {o.sent}, "
                 f"answered {o.answered}, refused_503 {o.refused_503}, lost {o.lost}")
    lines.append("tasks -> p50 ms: " + ", ".join(f"{r.tasks}: {r.p50_ms:.2f}" for r in report.tasks_scaling))
    for w in report.workers_scaling:
        lines.append(f"workers {w.workers}: {w.throughput_rps:.1f} req/s at concurrency {w.concurrency}, "
                     f"p99 {w.p99_ms:.1f} ms, server CPU {w.server_cpu_ms_per_request} ms/request")
    for p in report.profiles:
        lines.append(f"profile {p.server} c={p.concurrency}: {p.server_cpu_ms_per_request} CPU ms/request = "
                     + ", ".join(f"{k} {v:.2f}" for k, v in p.stages_ms.items()))
    lines.append("")
    for name, target in report.targets.named().items():
        judged = f" measured {target.measured:g} (threshold {target.threshold:g}; {target.basis})" \
            if isinstance(target, Target) else ""
        lines.append(f"{'PASS' if target.holds else 'FAIL'}  {name}: {target.goal}{judged}")
    return "\n".join(lines)
