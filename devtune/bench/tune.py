"""`devtune bench tune`: is a task added later as good as one trained in from the start?

For the held-out task (``dots`` in ``shapes``) one run measures, on the test split::

    tuned      a decoder trained on the FROZEN representation of the bundle (`devtune tune`:
               device ONNX -> quantize -> codec round trip -> dequantize), scored as its
               exported ONNX runs in the server
    joint      the same model (ModelConfig, epochs, seed, rate lambda as the bundle) trained
               with the task from the start, scored in torch on the quantized bottleneck
    fallback   the small device-side head trained next to the tuned decoder, as ONNX
    hot_add    the real server (own uvicorn process) serving the bundle under steady load
               from device clients while the tuned version is pushed: failed requests,
               and whether an unchanged device then gets the new task

and the wall time of the tune. ``--json`` prints one JSON object on stdout; logs and the
server's output go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devtune.bench.bundles import DEFAULT_BUNDLE, ensure_bundle, joint_train_config
from devtune.bench.output import emit_report

if TYPE_CHECKING:
    from models.data import Dataset


__all__ = ["add_arguments", "run"]

log = logging.getLogger("devtune")

TARGET_GAP_POINTS = 2.0  # tuned within this many points of joint
TARGET_TUNE_SECONDS = 120.0  # tuning the default held-out task, on 2 cores


@dataclass(frozen=True)
class JointRun:
    """The bundle's model trained again from scratch with the held-out task among its tasks."""

    metric: float  # the held-out task's, on the test split
    seconds: float
    epochs: int
    all_tasks: dict[str, float]  # every task's metric


@dataclass(frozen=True)
class HotAdd:
    """The tuned version pushed into a server under steady device traffic."""

    requests: int  # answered while the traffic ran, before and after the push
    failed: int
    failures: list[str]  # the first few, as repr
    push_seconds: float
    loaded_version: int
    new_task_answered: bool  # an unchanged device got the new task from the new version


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="frozen bundle (default bundles/default, trained first if missing)")
    parser.add_argument("--task", default=None, help="held-out task to add (default: the data's first held-out task, quadrant)")
    parser.add_argument("--data", default="shapes", help="data set or folder the bundle was trained on")
    parser.add_argument("--count", type=int, default=None,
                        help="training samples for the tune and the joint run (default: the whole split)")
    parser.add_argument("--test-count", type=int, default=None,
                        help="test (and validation) samples (default: the whole splits)")
    parser.add_argument("--tune-epochs", type=int, default=None, help="decoder epochs (default: devtune tune's)")
    parser.add_argument("--joint-epochs", type=int, default=None,
                        help="joint training epochs (default: the bundle's, from its manifest)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and ONNX Runtime threads for tuning and joint training (default 1: on a "
                        "busy 2-core machine more threads wait on each other and run several times slower)")
    parser.add_argument("--no-hot-add", dest="hot_add", action="store_false",
                        help="skip pushing the tuned version into a loaded server")


def _onnx_metric(path: Path, kind: str, z: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime as ort

    from models.metrics import score

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = np.concatenate([session.run(None, {"z": z[i : i + 256]})[0] for i in range(0, len(z), 256)])
    return score(kind, outputs, labels)


def _joint(bundle: Path, task: str, data: str, count: int | None, epochs: int | None,
           test: Dataset) -> JointRun:
    """Train the bundle's model again, from scratch, with ``task`` among its tasks."""
    from models.data import load_dataset
    from models.train import evaluate, train
    from models.tune import bundle_config
    from shared.bundle import read_manifest

    manifest = read_manifest(bundle)
    tcfg = joint_train_config(manifest, [task], epochs)
    train_split = load_dataset(data, "train", count=count, seed=tcfg.seed)
    log.info("joint training with %s from the start: %d samples, %d epochs", task, len(train_split), tcfg.epochs)
    result = train(bundle_config(bundle, manifest), tcfg, train_split, progress=False)
    scores = evaluate(result, test)
    return JointRun(scores[task], result.seconds, tcfg.epochs, scores)


def _hot_add(bundle: Path, tuned: Path, task: str, images: np.ndarray, workdir: Path) -> HotAdd:
    """Serve ``bundle``, keep device clients busy, push ``tuned``, then ask an unchanged device for ``task``."""
    from device_client import DeviceClient
    from devtune.bench.traffic import Traffic
    from devtune.server_process import ServerProcess
    from devtune.tuning_cli import push_bundle

    samples = list(images[:2])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    with ServerProcess(bundle, auth="off", repository=workdir / "repository") as server:
        with Traffic(lambda: DeviceClient(bundle, server.url), samples, threads=2) as traffic:
            traffic.wait_for(20)
            started = time.perf_counter()
            loaded = push_bundle(tuned, server.url)
            push_seconds = time.perf_counter() - started
            traffic.wait_for(20)
        with DeviceClient(bundle, server.url) as client:  # the ORIGINAL bundle: an unchanged device
            answer = client.predict(samples, tasks=[task]).response
    return HotAdd(
        requests=len(traffic.versions),
        failed=len(traffic.failures),
        failures=[repr(exc) for exc in traffic.failures[:3]],
        push_seconds=round(push_seconds, 3),
        loaded_version=loaded["version"],
        new_task_answered=task in answer.predictions and answer.version == loaded["version"],
    )


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from models.data import load_dataset
    from models.metrics import chance as chance_of
    from models.tune import TuneConfig, represent, tune_bundle

    bundle = Path(args.bundle)
    ensure_bundle(bundle, args.data)
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    test = load_dataset(args.data, "test", count=args.test_count)
    task = args.task or (test.held_out[0] if test.held_out else None)
    if task is None:
        raise ValueError(f"data set {test.name!r} has no held-out task; name one with --task")
    given = {"count": args.count, "val_count": args.test_count, "epochs": args.tune_epochs}
    config = TuneConfig(threads=args.threads, **{k: v for k, v in given.items() if v is not None})
    torch.set_num_threads(args.threads)  # the joint run too, so both sides get the same machine

    with tempfile.TemporaryDirectory(prefix="devtune-bench-tune-") as work:
        workdir = Path(work)
        log.info("tuning %s on the frozen representation of %s", task, bundle)
        result = tune_bundle(bundle, workdir / "tuned", task=task, data=args.data, config=config, fallback=[task])
        spec = result.manifest.task(task)
        z_test = represent(bundle, test.images)
        labels = test.labels[task]
        tuned = _onnx_metric(workdir / "tuned" / spec.file, spec.kind, z_test, labels)
        head = next(f for f in result.manifest.fallbacks if f.task == task)
        fallback = _onnx_metric(workdir / "tuned" / head.file, spec.kind, z_test, labels)
        log.info("tuned %s %.4f, fallback %.4f, in %.1f s", spec.metric, tuned, fallback, result.seconds)
        hot_add = _hot_add(bundle, workdir / "tuned", task, test.images, workdir) if args.hot_add else None
        joint = _joint(bundle, task, args.data, args.count, args.joint_epochs, test)
        log.info("joint %s %.4f in %.0f s", spec.metric, joint.metric, joint.seconds)

    sign = 1.0 if spec.higher_is_better else -1.0
    points = 100.0 if spec.metric in ("accuracy", "miou") else 1.0
    gap = sign * (joint.metric - tuned) * points
    chance = chance_of(spec.kind, labels)
    warnings = []
    if chance is not None and sign * (joint.metric - chance) * points < TARGET_GAP_POINTS:
        warnings.append(f"joint training does not learn {task} either ({joint.metric:.4f} vs {chance:.4f} "
                        "for a constant guess): tuned vs joint says nothing about device tuning here")
    targets = {
        "tuned_near_joint": {"goal": f"tuned within {TARGET_GAP_POINTS:g} points of joint",
                             "holds": gap <= TARGET_GAP_POINTS},
        "tune_time": {"goal": f"tuning under {TARGET_TUNE_SECONDS:.0f} s on 2 cores",
                      "holds": result.seconds < TARGET_TUNE_SECONDS},
    }
    if warnings:
        targets["tuned_near_joint"]["meaningful"] = False
    if hot_add is not None:
        targets["hot_add"] = {"goal": "adding the task to a loaded server fails no request",
                              "holds": hot_add.failed == 0 and hot_add.new_task_answered}
    return {
        "task": task,
        "metric": spec.metric,
        "higher_is_better": spec.higher_is_better,
        "tuned": round(tuned, 4),
        "joint": round(joint.metric, 4),
        "fallback": round(fallback, 4),
        "tune_seconds": round(result.seconds, 1),
        "chance": None if chance is None else round(chance, 4),
        "gap_points": round(gap, 2),
        "warnings": warnings,
        "tune": {"represent_seconds": round(result.represent_seconds, 1),
                 "train_seconds": round(result.train_seconds, 1),
                 "val_metric": round(result.val_metric, 4),
                 "epochs": config.epochs, "samples": result.manifest.training.get(f"tuned_{task}_samples"),
                 "includes": "frozen representation of train+val, decoder, device head, ONNX export, bundle write"},
        "joint_run": {"seconds": round(joint.seconds, 1), "epochs": joint.epochs,
                      "metrics": {k: round(v, 4) for k, v in joint.all_tasks.items()}},
        "hot_add": asdict(hot_add) if hot_add is not None else None,
        "targets": targets,
        "bundle": {"path": str(bundle), "name": result.manifest.name, "version": result.manifest.version - 1,
                   "tuned_version": result.manifest.version, "fingerprint": result.manifest.device_fingerprint},
        "test_samples": len(test),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _table(report: dict[str, Any]) -> str:
    better = "higher" if report["higher_is_better"] else "lower"
    title = f"held-out task {report['task']} ({report['metric']}, {better} is better), {report['test_samples']} test samples:"
    lines = [title,
             f"  tuned on the frozen representation  {report['tuned']:.4f}   ({report['tune_seconds']:.1f} s to tune)",
             f"  trained jointly from the start      {report['joint']:.4f}   ({report['joint_run']['seconds']:.0f} s)",
             f"  device fallback head                {report['fallback']:.4f}",
             f"  constant guess (chance)             {report['chance']}"]
    if report["hot_add"]:
        h = report["hot_add"]
        lines.append(f"  hot add under load: {h['requests']} requests, {h['failed']} failed, "
                     f"new task answered: {h['new_task_answered']}")
    lines.append("")
    for name, target in report["targets"].items():
        note = "" if target.get("meaningful", True) else " (not meaningful, see the warning)"
        lines.append(f"{'PASS' if target['holds'] else 'FAIL'}  {name}: {target['goal']}{note}")
    lines += [f"WARNING  {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return emit_report(args, lambda: _measure(args), lambda report: report, _table)
