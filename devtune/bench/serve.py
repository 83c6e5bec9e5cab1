"""`devtune bench serve`: the real server under load from a separate process.

The servers run as their own uvicorn processes on 127.0.0.1 (``ServerProcess``, auth
off); this process is the load generator (``devtune.loadgen``). One run measures::

    raw_decoder     every task's ONNX Runtime decoder on dequantized z, in this process,
                    at each batch size (samples/s): the ceiling the server is held to
    levels          closed loop at each concurrency, batching on (max_batch_size 64) and
                    off (1), native msgpack (/v1/predict, bodies from DeviceEncoder,
                    encoded once and replayed) and OIP JSON (/v2/models/{name}/infer,
                    the uint8 symbols as a JSON list); the on and off servers run side
                    by side and each level is measured on one right after the other, so
                    that other work on the machine weighs on both alike
    overload        open loop at twice the batched msgpack throughput, measured again just
                    before: answered, refused (503), lost (timeouts, connection errors)
    tasks_scaling   a generated bundle of 32 copies of one classification decoder, asked
                    for 1, 2, 4 ... 32 tasks at concurrency 1, in interleaved rounds;
                    p50 = a + b * tasks

and checks the targets (``targets`` in the JSON). Every level is bounded in time and in
requests, and every request has a timeout, so the run ends by itself. The client shares
the machine's cores with the server: its CPU time is reported next to the server's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devtune.bench import emit_report
from shared.bundle import MANIFEST_FILE

if TYPE_CHECKING:
    from devtune.loadgen import Client, LevelResult, Workload
    from devtune.server_process import ServerProcess


__all__ = ["add_arguments", "make_many_task_bundle", "run"]

log = logging.getLogger("devtune")

DEFAULT_BUNDLE = Path("bundles/default")
BATCH_ON = 64  # max_batch_size with batching on; 1 turns it off
TARGET_CONCURRENCY = 32  # batching >= TARGET_SPEEDUP x no batching here ...
TARGET_SPEEDUP = 2.0
TARGET_P99_MS = 100.0  # ... with p99 at most this
TARGET_SERVED_VS_RAW = 0.5  # served throughput at saturation / raw decoders at the same batch size
TARGET_OVERHEAD_SHARE = 0.1  # beyond its decoder time, an extra task may cost this share of a


def _ints(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,16, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="bundle to serve (default bundles/default, trained first if missing)")
    parser.add_argument("--quick", action="store_true",
                        help="short run (under 3 minutes): concurrency 1,4,32,64, 1 s per level")
    parser.add_argument("--concurrency", type=_ints, default=None,
                        help="closed-loop levels, also the raw decoder batch sizes (default 1,4,16,32,64)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per level (default 3)")
    parser.add_argument("--max-requests", type=int, default=20000, help="request budget per level")
    parser.add_argument("--encodings", default="msgpack,json",
                        help="msgpack (/v1/predict) and/or json (OIP /v2 infer); default both")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="server max_queue_delay_ms with batching on")
    parser.add_argument("--max-queue", type=int, default=128,
                        help="server max_queue: waiting requests beyond it are refused with 503")
    parser.add_argument("--overload-seconds", type=float, default=None, help="open-loop send time (default 4)")
    parser.add_argument("--overload-factor", type=float, default=2.0, help="offered rate / saturating rate")
    parser.add_argument("--connections", type=int, default=512, help="client connections in the overload run")
    parser.add_argument("--task-counts", type=_ints, default=None,
                        help="tasks asked in the many-task run (default 1,2,4,8,16,32; at most 32)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as lost")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: pre-built HTTP/1.1 on asyncio streams (cheap, default); httpx: AsyncClient")


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
    client: str
    timeout: float


def _plan(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    unknown = sorted(set(encodings) - {"msgpack", "json"})
    if unknown or not encodings:
        raise ValueError(f"unknown encoding(s) {unknown or encodings}; use msgpack, json or both")
    seconds = args.seconds if args.seconds is not None else (1.0 if quick else 3.0)
    if seconds <= 0 or args.max_requests < 1 or args.timeout <= 0:
        raise ValueError("--seconds, --max-requests and --timeout must be positive")
    task_counts = args.task_counts or [1, 2, 4, 8, 16, 32]
    if task_counts[-1] > 32:
        raise ValueError(f"the many-task bundle has 32 tasks; ask for at most 32, not {task_counts[-1]}")
    rounds = 2 if quick else 3
    return Plan(
        concurrency=args.concurrency or ([1, 4, 32, 64] if quick else [1, 4, 16, 32, 64]),
        seconds=seconds,
        warmup_s=min(0.5, seconds / 3),
        max_requests=args.max_requests,
        encodings=encodings,
        overload_seconds=args.overload_seconds if args.overload_seconds is not None else (2.0 if quick else 4.0),
        task_counts=task_counts,
        task_rounds=rounds,
        task_seconds=min(seconds, 2.0) / rounds,
        raw_seconds=min(seconds / 3, 1.0),
        client=args.client,
        timeout=args.timeout,
    )


# ---------------------------------------------------------------- what is sent


@dataclass(frozen=True)
class Bodies:
    """Pre-encoded request bodies, one sample each."""

    msgpack: list[bytes]  # PredictRequest for /v1/predict
    json: list[bytes]  # OIP infer request, symbols as a flat JSON list
    symbols: np.ndarray  # (S, N, C) uint8, for the raw decoder runs


def _encode_bodies(bundle: Path, count: int = 32, tasks: Sequence[str] | None = None) -> Bodies:
    from device_client import DeviceEncoder
    from models.data import make_shapes
    from shared.protocol import pack_request

    encoder = DeviceEncoder(bundle)
    images = make_shapes("test", count=count, seed=1).images
    encoded = [encoder.encode([image]) for image in images]
    msgpack_bodies = [pack_request(encoder.request(e, tasks)) for e in encoded]
    outputs = {"outputs": [{"name": t} for t in tasks]} if tasks is not None else {}
    json_bodies = [
        json.dumps({
            "inputs": [{"name": "representation", "datatype": "UINT8", "shape": list(e.symbols.shape),
                        "data": e.symbols.ravel().tolist()}],
            **outputs,
        }).encode()
        for e in encoded
    ]
    return Bodies(msgpack_bodies, json_bodies, np.concatenate([e.symbols for e in encoded]))


# ---------------------------------------------------------------- decoders alone


def _raw_decoders(bundle: Path, symbols: np.ndarray, batch_sizes: Sequence[int], seconds: float, rounds: int = 3
                  ) -> list[dict[str, Any]]:
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
    rows = []
    for size in batch_sizes:
        rate = float(np.median(rates[size]))
        rows.append({"batch_size": size, "throughput_rps": round(rate, 1), "pass_ms": round(size / rate * 1000, 3)})
    return rows


def _raw_at(raw: list[dict[str, Any]], batch: float) -> dict[str, Any]:
    """Raw throughput at ``batch`` samples, interpolated in log(batch size) between measured sizes."""
    sizes = [float(r["batch_size"]) for r in raw]
    rate = float(np.interp(np.log(batch), np.log(sizes), [r["throughput_rps"] for r in raw]))
    return {"batch_size": round(batch, 2), "throughput_rps": round(rate, 1), "interpolated": batch not in sizes}


def _decoder_pass_ms(bundle: Path, tasks: Sequence[str], symbols: np.ndarray, rounds: int = 30
                     ) -> tuple[float, float]:
    """Median ms of one decoder pass at batch 1: (one session again and again, all of ``tasks`` in turn).

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
    return round(float(np.median(hot)) * 1000, 4), round(float(np.median(rotating)) * 1000, 4)


# ---------------------------------------------------------------- the many-task bundle


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


# ---------------------------------------------------------------- against the servers


def _start(stack: ExitStack, bundle: Path, **settings: object) -> ServerProcess:
    from devtune.server_process import ServerProcess

    process = ServerProcess(bundle, None, auth="off", log_level="error", **settings)
    log.info("starting a server on %s (%s)", process.url, ", ".join(f"{k}={v}" for k, v in settings.items()))
    return stack.enter_context(process)


@dataclass(frozen=True)
class _Snapshot:
    """What a server's /metrics and /proc say at one moment."""

    samples: float  # sum of devtune_batch_samples: each request adds the size of its batch
    compute_s: float  # sum of devtune_compute_seconds: each request adds its batch's decoder time
    requests: float  # their count
    cpu_s: float | None  # the server process's CPU time

    @classmethod
    def take(cls, process: ServerProcess) -> _Snapshot:
        import httpx

        from devtune.loadgen import process_cpu_seconds, scrape_histogram

        page = httpx.get(f"{process.url}/metrics", timeout=5.0).text
        samples, requests = scrape_histogram(page, "devtune_batch_samples")
        compute_s, _ = scrape_histogram(page, "devtune_compute_seconds")
        pid = process.process.pid if process.process is not None else -1
        return cls(samples, compute_s, requests, process_cpu_seconds(pid))

    def since(self, before: _Snapshot) -> dict[str, float | None]:
        """Request-weighted mean batch and decoder ms per batch, and CPU seconds, between two snapshots."""
        requests = self.requests - before.requests
        cpu = self.cpu_s - before.cpu_s if self.cpu_s is not None and before.cpu_s is not None else None
        if requests <= 0:
            return {"mean_batch": 0.0, "compute_ms": 0.0, "cpu_s": cpu}
        return {"mean_batch": (self.samples - before.samples) / requests,
                "compute_ms": (self.compute_s - before.compute_s) / requests * 1000, "cpu_s": cpu}


def _level_row(result: LevelResult) -> dict[str, Any]:
    row = asdict(result)
    del row["latencies_ms"]
    return row


def _run_level(process: ServerProcess, workload: Workload, concurrency: int, plan: Plan) -> dict[str, Any]:
    from devtune.loadgen import closed_loop

    before = _Snapshot.take(process)
    result = closed_loop(workload, concurrency, plan.seconds, plan.max_requests, plan.warmup_s, plan.timeout,
                         _client(plan))
    stats = _Snapshot.take(process).since(before)  # the warm-up's requests are in too: close enough for means
    row = _level_row(result)
    batch, compute_ms, cpu = stats["mean_batch"] or 0.0, stats["compute_ms"] or 0.0, stats["cpu_s"]
    row["mean_batch"] = round(batch, 2)
    # samples/s of the decoders inside the server at that batch size, on the machine as it was then
    row["decoder_rps_in_server"] = round(batch / compute_ms * 1000, 1) if compute_ms else 0.0
    row["server_cpu_s"] = round(cpu, 3) if cpu is not None else None
    sent = max(1, result.sent)
    row["server_cpu_ms_per_request"] = round(cpu / sent * 1000, 3) if cpu is not None else None
    row["client_cpu_ms_per_request"] = round(result.client_cpu_s / sent * 1000, 3)
    return row


def _client(plan: Plan) -> Client:
    return "httpx" if plan.client == "httpx" else "raw"


def _workloads(process: ServerProcess, model: str, bodies: Bodies) -> dict[str, Workload]:
    from devtune.loadgen import Workload
    from shared.protocol import CONTENT_TYPE

    return {
        "msgpack": Workload(f"{process.url}/v1/predict", bodies.msgpack, {"Content-Type": CONTENT_TYPE}),
        "json": Workload(f"{process.url}/v2/models/{model}/infer", bodies.json, {"Content-Type": "application/json"}),
    }


def _levels_and_overload(bundle: Path, model: str, bodies: Bodies, plan: Plan, args: argparse.Namespace
                         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from devtune.loadgen import closed_loop, open_loop

    rows: list[dict[str, Any]] = []
    common = {"max_queue_delay_ms": args.delay_ms, "max_queue": args.max_queue}
    with ExitStack() as stack:
        servers = {True: _start(stack, bundle, max_batch_size=BATCH_ON, **common),
                   False: _start(stack, bundle, max_batch_size=1, **common)}
        workloads = {batching: _workloads(process, model, bodies) for batching, process in servers.items()}
        for encoding in plan.encodings:
            for concurrency in plan.concurrency:
                for batching, process in servers.items():
                    row = _run_level(process, workloads[batching][encoding], concurrency, plan)
                    row = {"batching": batching, "encoding": encoding, **row}
                    log.info("batching %-3s %-7s c=%-3d %7.1f req/s  p50 %7.2f  p99 %7.2f ms  batch %5.1f  "
                             "errors %d  503 %d", "on" if batching else "off", encoding, concurrency,
                             row["throughput_rps"], row["p50_ms"], row["p99_ms"], row["mean_batch"],
                             row["errors"], row["refused_503"])
                    rows.append(row)

        # Saturation, measured again right before the overload so that both see the same machine.
        encoding = plan.encodings[0]
        best = max((r for r in rows if r["batching"] and r["encoding"] == encoding),
                   key=lambda r: r["throughput_rps"])
        workload = workloads[True][encoding]
        saturated = closed_loop(workload, best["concurrency"], plan.seconds, plan.max_requests, plan.warmup_s,
                                plan.timeout, _client(plan))
        rate = max(1.0, saturated.throughput_rps * args.overload_factor)
        log.info("overload: %.0f req/s (%.1f x %.0f at concurrency %d) for %.1f s", rate, args.overload_factor,
                 saturated.throughput_rps, best["concurrency"], plan.overload_seconds)
        result = open_loop(workload, rate, plan.overload_seconds, max(1, round(rate * plan.overload_seconds)),
                           connections=args.connections, timeout=plan.timeout, client=_client(plan))
        overload = {"encoding": encoding, "concurrency": best["concurrency"],
                    "saturating_rps": saturated.throughput_rps, "factor": args.overload_factor,
                    "max_queue": args.max_queue, "connections": args.connections, **asdict(result)}
        log.info("overload: sent %d, answered %d, refused %d, lost %d; slowest answer %.0f ms", result.sent,
                 result.answered, result.refused_503, result.lost, result.max_ms)
        child = servers[True].process
        if child is None or child.poll() is not None:
            raise RuntimeError("the server died during the overload run; see its log above")
    return rows, overload


def _tasks_scaling(bundle: Path, many: Path, names: list[str], plan: Plan, args: argparse.Namespace
                   ) -> list[dict[str, Any]]:
    from devtune.loadgen import Workload, closed_loop, percentile
    from shared.protocol import CONTENT_TYPE

    bodies = {k: _encode_bodies(bundle, count=8, tasks=names[:k]).msgpack for k in plan.task_counts}
    latencies: dict[int, list[float]] = {k: [] for k in plan.task_counts}
    compute_ms: dict[int, list[float]] = {k: [] for k in plan.task_counts}
    errors = dict.fromkeys(plan.task_counts, 0)
    # Batching off: at concurrency 1 the batcher would only add its queue delay to every request.
    with ExitStack() as stack:
        process = _start(stack, many, max_batch_size=1, max_queue=args.max_queue)
        for _ in range(plan.task_rounds):  # interleaved, so that a busy spell weighs on every count alike
            for k in plan.task_counts:
                workload = Workload(f"{process.url}/v1/predict", bodies[k], {"Content-Type": CONTENT_TYPE})
                before = _Snapshot.take(process)
                result = closed_loop(workload, 1, plan.task_seconds, plan.max_requests, min(0.2, plan.warmup_s),
                                     plan.timeout, _client(plan))
                compute_ms[k].append(_Snapshot.take(process).since(before)["compute_ms"] or 0.0)
                latencies[k] += result.latencies_ms
                errors[k] += result.errors + result.refused_503
    rows = [{"tasks": k, "p50_ms": percentile(latencies[k], 50), "p99_ms": percentile(latencies[k], 99),
             "decoder_ms_in_server": round(float(np.median(compute_ms[k])), 3), "answered": len(latencies[k]),
             "errors": errors[k]} for k in plan.task_counts]
    for row in rows:
        log.info("%2d tasks: p50 %.2f ms, of which %.2f ms in the decoders", row["tasks"], row["p50_ms"],
                 row["decoder_ms_in_server"])
    return rows


# ---------------------------------------------------------------- targets


def _fit(rows: list[dict[str, Any]], key: str = "p50_ms") -> tuple[float, float]:
    """Least-squares (a, b) of row[key] = a + b * tasks."""
    k = np.array([r["tasks"] for r in rows], dtype=float)
    y = np.array([r[key] for r in rows], dtype=float)
    if len(set(k.tolist())) < 2:
        return float(y.mean()), 0.0
    b, a = np.polyfit(k, y, 1)
    return float(a), float(b)


def _level(levels: list[dict[str, Any]], concurrency: int, batching: bool, encoding: str) -> dict[str, Any] | None:
    return next((r for r in levels if r["concurrency"] == concurrency and r["batching"] is batching
                 and r["encoding"] == encoding), None)


def _targets(report: dict[str, Any], raw_at_saturation: dict[str, Any], passes: tuple[float, float]
             ) -> dict[str, Any]:
    levels, config = report["levels"], report["config"]
    encoding = config["encodings"][0]
    targets: dict[str, Any] = {}

    c = TARGET_CONCURRENCY if TARGET_CONCURRENCY in config["concurrency"] else max(config["concurrency"])
    on, off = _level(levels, c, True, encoding), _level(levels, c, False, encoding)
    if on and off:
        speedup = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] else 0.0
        targets["batching_speedup"] = {
            "goal": f"batching >= {TARGET_SPEEDUP}x the throughput of no batching at concurrency {c} "
                    f"with p99 <= {TARGET_P99_MS} ms ({encoding})",
            "concurrency": c, "batched_rps": on["throughput_rps"], "unbatched_rps": off["throughput_rps"],
            "speedup": round(speedup, 2), "batched_p99_ms": on["p99_ms"],
            "holds": speedup >= TARGET_SPEEDUP and on["p99_ms"] <= TARGET_P99_MS,
        }

    best = max((r for r in levels if r["batching"] and r["encoding"] == encoding),
               key=lambda r: r["throughput_rps"])
    ratio = best["throughput_rps"] / raw_at_saturation["throughput_rps"]
    targets["served_vs_raw"] = {
        "goal": f"served throughput at saturation >= {TARGET_SERVED_VS_RAW} x the raw decoder throughput "
                f"at the same batch size ({encoding})",
        "served_rps": best["throughput_rps"], "concurrency": best["concurrency"], "mean_batch": best["mean_batch"],
        "raw_batch_size": raw_at_saturation["batch_size"], "raw_rps": raw_at_saturation["throughput_rps"],
        "decoder_rps_in_server": best["decoder_rps_in_server"],  # the same decoders, sharing the cores
        "ratio": round(ratio, 3), "holds": ratio >= TARGET_SERVED_VS_RAW,
    }

    overload = report["overload"]
    targets["overload"] = {
        "goal": f"at {overload['factor']}x the saturating rate nothing is lost or timed out (refusals are 503s)",
        "rate_rps": overload["rate_rps"], "sent": overload["sent"], "answered": overload["answered"],
        "refused_503": overload["refused_503"], "lost": overload["lost"], "errors": overload["errors"],
        "max_ms": overload["max_ms"], "holds": overload["lost"] == 0 and overload["errors"] == 0,
    }

    a, b = _fit(report["tasks_scaling"])
    _, decoder_b = _fit(report["tasks_scaling"], "decoder_ms_in_server")
    hot, rotating = passes
    # An extra task should cost its decoder pass (as the server measured it, weights coming
    # back into the cache included) and its share of the answer, not another round of HTTP,
    # parsing and queueing: those belong in a, paid once.
    targets["per_request_overhead"] = {
        "goal": f"per-request overhead paid once: p50 = a + b * tasks with b at most the decoder time per task "
                f"in the server plus {TARGET_OVERHEAD_SHARE} a",
        "a_ms": round(a, 3), "b_ms": round(b, 3), "decoder_ms_per_task_in_server": round(decoder_b, 3),
        "single_decoder_pass_ms": hot, "decoder_pass_in_turn_ms": rotating,
        "holds": b <= decoder_b + TARGET_OVERHEAD_SHARE * a,
    }
    return targets


# ---------------------------------------------------------------- the command


def _ensure_bundle(bundle: Path) -> None:
    if (bundle / MANIFEST_FILE).is_file():
        return
    if bundle != DEFAULT_BUNDLE:
        raise FileNotFoundError(f"no bundle at {bundle} (no {MANIFEST_FILE}); pass a bundle made by `devtune train`")
    from devtune.pipeline import train_bundle

    log.info("no bundle at %s: training the default one (a few minutes on 2 cores)", bundle)
    train_bundle(bundle, progress=False)


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from shared.bundle import read_manifest

    plan = _plan(args)
    bundle = Path(args.bundle)
    _ensure_bundle(bundle)
    manifest = read_manifest(bundle)
    started = time.perf_counter()
    load_before = os.getloadavg()
    bodies = _encode_bodies(bundle)

    log.info("raw decoders at batch sizes %s", plan.concurrency)
    raw = _raw_decoders(bundle, bodies.symbols, plan.concurrency, plan.raw_seconds)
    levels, overload = _levels_and_overload(bundle, manifest.name, bodies, plan, args)

    # The raw ceiling at the batch size the server reached at saturation, read off the
    # curve measured before the servers started (not measured again later: the load
    # of the machine drifts, and the two numbers should see the same one).
    best = max((r for r in levels if r["batching"] and r["encoding"] == plan.encodings[0]),
               key=lambda r: r["throughput_rps"])
    raw_at_saturation = _raw_at(raw, max(1.0, best["mean_batch"]))

    with tempfile.TemporaryDirectory(prefix="devtune-bench-") as workdir:
        many = Path(workdir) / "manytasks"
        names = make_many_task_bundle(bundle, many)
        scaling = _tasks_scaling(bundle, many, names, plan, args)
        passes = _decoder_pass_ms(many, names, bodies.symbols)

    report: dict[str, Any] = {
        "bundle": {"path": str(bundle), "name": manifest.name, "version": manifest.version,
                   "tasks": manifest.task_names},
        "config": {**asdict(plan), "max_batch_size_on": BATCH_ON, "delay_ms": args.delay_ms,
                   "max_queue": args.max_queue, "threads": 1},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(v, 2) for v in load_before],
                    "loadavg_after": [round(v, 2) for v in os.getloadavg()]},
        "note": "the load generator, the servers and any other jobs share this machine's cores: "
                "client_cpu_ms_per_request and server_cpu_ms_per_request show the split, loadavg the rest",
        "levels": levels,
        "raw_decoder": raw,
        "overload": overload,
        "tasks_scaling": scaling,
    }
    report["targets"] = _targets(report, raw_at_saturation, passes)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _table(report: dict[str, Any]) -> str:
    lines = ["batching encoding  conc   req/s    p50 ms   p90 ms   p99 ms  batch  err  503  server/client CPU ms"]
    for r in report["levels"]:
        lines.append(f"{'on' if r['batching'] else 'off':<8} {r['encoding']:<8} {r['concurrency']:>5} "
                     f"{r['throughput_rps']:>7.1f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                     f"{r['mean_batch']:>6.1f} {r['errors']:>4} {r['refused_503']:>4}  "
                     f"{r['server_cpu_ms_per_request'] or 0:>6.2f} / {r['client_cpu_ms_per_request']:.2f}")
    lines.append("")
    lines.append("raw decoders, all tasks, samples/s: " + ", ".join(
        f"B={r['batch_size']} {r['throughput_rps']:.0f}" for r in report["raw_decoder"]))
    o = report["overload"]
    lines.append(f"overload at {o['rate_rps']:.0f} req/s for {report['config']['overload_seconds']} s: sent {o['sent']}, "
                 f"answered {o['answered']}, refused_503 {o['refused_503']}, lost {o['lost']}")
    lines.append("tasks -> p50 ms: " + ", ".join(f"{r['tasks']}: {r['p50_ms']:.2f}" for r in report["tasks_scaling"]))
    lines.append("")
    for name, target in report["targets"].items():
        lines.append(f"{'PASS' if target['holds'] else 'FAIL'}  {name}: {target['goal']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # httpx logs every request at INFO: costly in a load generator, and noise.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return emit_report(args, _measure, _table)
