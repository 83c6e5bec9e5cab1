"""Many tasks in one request: a bundle of 32 copies of one decoder, and p50 against tasks asked.

The copies share the original's device fingerprint, so requests encoded for the original
bundle can ask the copy for any number of tasks, and every task costs the same decoder.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from devtune.bench.serve.plan import Plan

__all__ = ["TaskCount", "make_many_task_bundle", "tasks_scaling"]

log = logging.getLogger("devtune")


@dataclass(frozen=True)
class TaskCount:
    """Requests asking for ``tasks`` tasks, at concurrency 1, pooled over the rounds."""

    tasks: int
    p50_ms: float
    p99_ms: float
    decoder_ms_in_server: float  # median over rounds of the decoder time per request
    answered: int
    errors: int  # any failure, 503s included


def _copied_task(bundle: Path) -> str:
    from shared.bundle import read_manifest

    manifest = read_manifest(bundle)
    kinds = {t.name: t.kind for t in manifest.tasks}
    if kinds.get("shape") == "classification":
        return "shape"
    return next((name for name, kind in kinds.items() if kind == "classification"), manifest.tasks[0].name)


def make_many_task_bundle(bundle: Path, out: Path, count: int = 32, name: str = "manytasks") -> list[str]:
    """A bundle with ``count`` copies of one decoder as tasks t00, t01, ...; same fingerprint.

    It accepts every payload of ``bundle``'s devices, so requests encoded for that bundle
    can ask it for any number of tasks. Returns the task names.
    """
    from shared.bundle import hash_files, read_manifest, write_manifest

    manifest = read_manifest(bundle)
    source = manifest.task(_copied_task(bundle))
    if out.exists():
        shutil.rmtree(out)
    (out / "cloud").mkdir(parents=True)
    shutil.copytree(bundle / "device", out / "device")
    tasks = []
    for i in range(count):
        task = f"t{i:02d}"
        shutil.copyfile(bundle / source.file, out / "cloud" / f"{task}.onnx")
        tasks.append(source.model_copy(update={"name": task, "file": f"cloud/{task}.onnx"}))
    write_manifest(out, manifest.model_copy(
        update={"name": name, "version": 1, "tasks": tasks, "fallbacks": [], "files": hash_files(out),
                "training": {"copied_task": source.name}}
    ))
    return [t.name for t in tasks]


def tasks_scaling(bundle: Path, many: Path, names: list[str], plan: Plan) -> list[TaskCount]:
    """p50 and decoder time in the server for each of ``plan.task_counts``, in interleaved rounds."""
    from devtune.bench.loadgen import Workload, closed_loop, percentile
    from devtune.bench.serve.bodies import encode_bodies
    from devtune.bench.serve.servers import Snapshot, start_server
    from shared.protocol import CONTENT_TYPE

    bodies = {k: encode_bodies(bundle, count=8, tasks=names[:k]).msgpack for k in plan.task_counts}
    latencies: dict[int, list[float]] = {k: [] for k in plan.task_counts}
    compute_ms: dict[int, list[float]] = {k: [] for k in plan.task_counts}
    errors = dict.fromkeys(plan.task_counts, 0)
    # Batching off: at concurrency 1 the batcher would only add its queue delay to every request.
    with ExitStack() as stack:
        process = start_server(stack, many, max_batch_size=1, max_queue=plan.max_queue)
        for _ in range(plan.task_rounds):  # interleaved, so that a busy spell weighs on every count alike
            for k in plan.task_counts:
                workload = Workload(f"{process.url}/v1/predict", bodies[k], {"Content-Type": CONTENT_TYPE})
                before = Snapshot.take(process)
                result = closed_loop(workload, 1, plan.task_seconds, plan.max_requests, min(0.2, plan.warmup_s),
                                     plan.timeout, plan.client)
                compute_ms[k].append(Snapshot.take(process).since(before).compute_ms)
                latencies[k] += result.latencies_ms
                errors[k] += result.errors + result.refused_503
    rows = [TaskCount(k, percentile(latencies[k], 50), percentile(latencies[k], 99),
                      round(float(np.median(compute_ms[k])), 3), len(latencies[k]), errors[k])
            for k in plan.task_counts]
    for row in rows:
        log.info("%2d tasks: p50 %.2f ms, of which %.2f ms in the decoders", row.tasks, row.p50_ms,
                 row.decoder_ms_in_server)
    return rows
