"""One whole `devtune bench serve` run: decoders alone, levels and overload, many tasks: ``ServeReport``."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devtune.bench.serve.decoders import DecoderRate
from devtune.bench.serve.levels import Level, Overload
from devtune.bench.serve.plan import Plan
from devtune.bench.serve.profile import Profile
from devtune.bench.serve.scaling import TaskCount
from devtune.bench.serve.targets import ServeTargets
from devtune.bench.serve.workers import WorkerCount

__all__ = ["BundleInfo", "Machine", "ServeReport", "measure"]

log = logging.getLogger("devtune")


@dataclass(frozen=True)
class BundleInfo:
    path: str
    name: str
    version: int
    tasks: list[str]


@dataclass(frozen=True)
class Machine:
    cpus: int | None
    loadavg_before: list[float]
    loadavg_after: list[float]


@dataclass(frozen=True)
class ServeReport:
    bundle: BundleInfo
    plan: Plan
    machine: Machine
    levels: list[Level]
    raw_decoder: list[DecoderRate]
    overload: Overload
    tasks_scaling: list[TaskCount]
    targets: ServeTargets
    seconds: float
    profiles: list[Profile]
    workers_scaling: list[WorkerCount]


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def measure(plan: Plan, bundle: Path) -> ServeReport:
    """Run everything ``plan`` says against ``bundle`` (the default one is trained when missing)."""
    from devtune.bench.bundles import ensure_bundle
    from devtune.bench.serve.bodies import encode_bodies
    from devtune.bench.serve.decoders import decoder_passes, raw_at, raw_decoders
    from devtune.bench.serve.levels import levels_and_overload, saturation
    from devtune.bench.serve.scaling import make_many_task_bundle, tasks_scaling
    from devtune.bench.serve.targets import body_framing, evaluate_targets
    from devtune.bench.serve.workers import workers_scaling
    from shared.bundle import read_manifest

    ensure_bundle(bundle)
    manifest = read_manifest(bundle)
    started = time.perf_counter()
    load_before = _loadavg()
    bodies = encode_bodies(bundle)

    log.info("raw decoders at batch sizes %s", plan.concurrency)
    raw = raw_decoders(bundle, bodies.symbols, plan.concurrency, plan.raw_seconds)
    levels, overload, profiles = levels_and_overload(bundle, manifest.name, bodies, plan)

    # The raw ceiling at the batch size the server reached at saturation, read off the
    # curve measured before the servers started (not measured again later: the load
    # of the machine drifts, and the two numbers should see the same one).
    raw_at_saturation = raw_at(raw, max(1.0, saturation(levels, plan.encodings[0]).mean_batch))
    # A lone request can take no less than one pass of every decoder at batch 1.
    bare_pass_ms = next((r.pass_ms for r in raw if r.batch_size == 1), None)

    scaling_by_workers = workers_scaling(bundle, bodies, plan)

    with tempfile.TemporaryDirectory(prefix="devtune-bench-") as workdir:
        many = Path(workdir) / "manytasks"
        names = make_many_task_bundle(bundle, many)
        scaling = tasks_scaling(bundle, many, names, plan)
        passes = decoder_passes(many, names, bodies.symbols)

    return ServeReport(
        bundle=BundleInfo(str(bundle), manifest.name, manifest.version, manifest.task_names),
        plan=plan,
        machine=Machine(os.cpu_count(), load_before, _loadavg()),
        levels=levels,
        raw_decoder=raw,
        overload=overload,
        tasks_scaling=scaling,
        targets=evaluate_targets(plan, levels, raw_at_saturation, overload, scaling, passes, bare_pass_ms,
                                 body_framing(bodies.msgpack, bodies.coded_bytes)),
        seconds=round(time.perf_counter() - started, 1),
        profiles=profiles,
        workers_scaling=scaling_by_workers,
    )
