"""`devtune bench transfer`: does the frozen representation serve tasks it was never trained for?

For every held-out task of the data (the transfer suite of ``shapes``), on the test split::

    tuned    a decoder trained on the FROZEN representation of the bundle, exactly as
             `devtune tune` trains one (device ONNX -> quantize -> codec round trip ->
             dequantize), scored as its exported ONNX runs in the server
    pixels   a linear probe on 16x16 downsampled pixels: the floor a representation worth
             sending must clear (ridge for regression and dense maps, logistic regression
             for classes)
    joint    the bundle's model (config, epochs, seed, rate weight) trained from scratch with
             every suite task among its tasks: the ceiling
    chance   the best constant guess

plus the bundle's own (trained) tasks through its cloud ONNX decoders on the same frozen
test split, and its coded bytes per sample. ``--baseline DIR`` measures a second bundle
(tuned and trained tasks, bytes) side by side, for example one trained with the older
objective. ``--json`` prints one JSON object on stdout; a plot per task goes next to ``--out``.

Every tuned decoder and the joint run are independent single-threaded trainings, so they run
in ``--jobs`` processes at once (default: one per CPU this process may use); the numbers do not
depend on the job count, only the wall time does.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devtune.bench.bundles import DEFAULT_BUNDLE, ensure_bundle
from devtune.bench.output import emit_report, save_figure

if TYPE_CHECKING:
    from models.dataset import Dataset, TaskInfo

__all__ = ["add_arguments", "run"]

log = logging.getLogger("devtune")

TARGET_GAP = 2.0  # mean gap to joint: points for accuracy / mIoU, per cent relative for errors ...
TARGET_GAP_RELATIVE = 5.0  # ... for which the issue allows 5 % relative per 2 points


@dataclass(frozen=True)
class TaskResult:
    task: str
    kind: str
    metric: str
    higher_is_better: bool
    tuned: float
    pixels: float
    joint: float | None
    chance: float | None
    baseline_tuned: float | None  # the --baseline bundle's tuned decoder


@dataclass(frozen=True)
class BundleFacts:
    path: str
    objective: str
    bytes_per_sample: float  # the bundle's codec, each test sample coded alone
    trained: dict[str, float]  # its own tasks, cloud ONNX on the frozen test split


@dataclass(frozen=True)
class TransferReport:
    bundle: BundleFacts
    baseline: BundleFacts | None
    tasks: list[TaskResult]
    targets: dict[str, dict[str, Any]]
    test_samples: int
    train_samples: int
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="frozen bundle (default bundles/default, trained first if missing)")
    parser.add_argument("--baseline", type=Path, default=None, help="a second bundle to measure side by side")
    parser.add_argument("--data", default="shapes", help="data set or folder with held-out tasks")
    parser.add_argument("--tasks", default=None, help="comma-separated held-out tasks (default: all of them)")
    parser.add_argument("--count", type=int, default=None, help="training samples (default: the whole split)")
    parser.add_argument("--test-count", type=int, default=None, help="test samples (default: the whole split)")
    parser.add_argument("--tune-epochs", type=int, default=None, help="decoder epochs (default: devtune tune's)")
    parser.add_argument("--joint-epochs", type=int, default=None,
                        help="joint training epochs (default: the bundle's); 0 skips the joint run")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads per training")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trainings run at once, each in its own process (default: one per CPU this process may use)")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized: 1000 training and 300 test samples, 3 tune epochs, 1 joint epoch")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="skip the plot")


# ---- the probes -------------------------------------------------------------------------


def thumbnails(images: np.ndarray, side: int = 16) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, side*side*3) float32 block means: what the pixel probe sees."""
    b, h, w, _ = images.shape
    x = images.astype(np.float32) / 255.0
    blocks: np.ndarray = x.reshape(b, side, h // side, side, w // side, 3).mean(axis=(2, 4))
    return blocks.reshape(b, -1)


def pixel_probe(info: TaskInfo, train: Dataset, test: Dataset) -> float:
    """A linear model on 16x16 thumbnails, fit on ``train``, scored on ``test``."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    from models.metrics import score

    scaler = StandardScaler().fit(thumbnails(train.images))
    x_train, x_test = scaler.transform(thumbnails(train.images)), scaler.transform(thumbnails(test.images))
    y = train.labels[info.name]
    if info.kind == "classification":
        probe = LogisticRegression(C=0.05, max_iter=2000).fit(x_train, y)
        scores = probe.predict_proba(x_test)
        outputs = np.zeros((len(x_test), len(info.classes or [])), np.float32)
        outputs[:, probe.classes_] = scores
    elif info.kind == "regression":
        outputs = Ridge(alpha=10.0).fit(x_train, y).predict(x_test).reshape(len(x_test), -1)
    else:  # dense: one ridge per output cell and class, argmax over classes
        classes = len(info.classes or [])
        onehot = np.eye(classes, dtype=np.float32)[y.reshape(len(y), -1)]  # (B, S*S, K)
        fit = Ridge(alpha=10.0).fit(x_train, onehot.reshape(len(y), -1))
        side = y.shape[-1]
        outputs = fit.predict(x_test).reshape(len(x_test), side, side, classes).transpose(0, 3, 1, 2)
    return score(info.kind, np.asarray(outputs), test.labels[info.name])


# ---- one bundle -------------------------------------------------------------------------

# What the worker processes read. They are forked after it is set, so the arrays are shared
# copy-on-write instead of pickled to every job.
_FROZEN: dict[str, tuple[Any, list[Any]]] = {}  # "bundle"/"baseline" -> (ModelConfig, [train, val, test])


def _tune_one(side: str, info: TaskInfo, config: Any) -> float:
    """Train one decoder on one frozen bundle as `devtune tune` does; its test metric."""
    import torch

    from models.train import heads_for
    from models.tune import onnx_score, train_decoder

    torch.set_num_threads(config.threads)
    cfg, (train, val, test) = _FROZEN[side]
    (head,) = heads_for([info])
    onnx, _ = train_decoder(cfg, head, train, val, config)
    return float(onnx_score(onnx, head, test))


def _freeze(side: str, bundle: Path, train: Dataset, val: Dataset, test: Dataset, threads: int) -> BundleFacts:
    """Run the three splits through the bundle's device half once; its trained tasks and bytes."""
    from models.train import heads_for
    from models.tune import FrozenSplit, bundle_config, onnx_score, represent
    from shared.bundle import read_manifest

    manifest = read_manifest(bundle)
    started = time.perf_counter()
    splits = [FrozenSplit(represent(bundle, part.images, threads=threads), part) for part in (train, val, test)]
    log.info("represented %d samples through %s in %.0f s", sum(len(p) for p in (train, val, test)), bundle,
             time.perf_counter() - started)
    _FROZEN[side] = (bundle_config(bundle, manifest), splits)
    trained = {spec.name: onnx_score((bundle / spec.file).read_bytes(), heads_for([spec_info(spec)])[0], splits[2])
               for spec in manifest.tasks if spec.default}
    return BundleFacts(str(bundle), str(manifest.training.get("objective", "tasks+rate")),
                       _bytes_per_sample(bundle, test), trained)


class _Inline(Executor):
    """``--jobs 1``: every job runs in this process, when submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _pool(jobs: int) -> Executor:
    if jobs <= 1:
        return _Inline()
    # fork: the workers inherit _FROZEN and the data sets; torch runs one thread in this
    # process, so the children inherit no thread pool to break
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"))


def spec_info(spec: Any) -> TaskInfo:
    """The TaskInfo a served task spec stands for (enough to rebuild its head)."""
    from models.dataset import TaskInfo

    return TaskInfo(spec.name, spec.kind, classes=spec.classes, units=spec.units)


def _bytes_per_sample(bundle: Path, test: Dataset) -> float:
    from device_client import DeviceEncoder

    encoder = DeviceEncoder(bundle)
    sizes = [len(encoder.encode([image]).payload) for image in test.images[:256]]
    return float(np.mean(sizes))


def _joint(bundle: Path, tasks: list[str], train: Dataset, test: Dataset, epochs: int | None,
           threads: int) -> dict[str, float]:
    """The bundle's model trained from scratch with every task of ``tasks`` from the start."""
    import torch

    from devtune.bench.bundles import joint_train_config
    from models.train import evaluate
    from models.train import train as fit_model
    from models.tune import bundle_config
    from shared.bundle import read_manifest

    torch.set_num_threads(threads)
    manifest = read_manifest(bundle)
    tcfg = joint_train_config(manifest, tasks, epochs)
    log.info("joint training on %d tasks from the start: %d samples, %d epochs", len(tcfg.tasks or ()),
             len(train), tcfg.epochs)
    result = fit_model(bundle_config(bundle, manifest), tcfg, train, progress=False)
    return evaluate(result, test)


# ---- judging ----------------------------------------------------------------------------


def gap(result: TaskResult) -> float | None:
    """How far tuned falls short of joint, in units of the target (1.0 = 2 points or 5 % relative)."""
    if result.joint is None:
        return None
    if result.higher_is_better:
        return 100.0 * (result.joint - result.tuned) / TARGET_GAP
    return 100.0 * (result.tuned - result.joint) / max(abs(result.joint), 1e-9) / TARGET_GAP_RELATIVE


def beats(result: TaskResult, floor: float) -> bool:
    return result.tuned > floor if result.higher_is_better else result.tuned < floor


def judge(tasks: list[TaskResult], bundle: BundleFacts, baseline: BundleFacts | None,
          higher: dict[str, bool]) -> dict[str, dict[str, Any]]:
    gaps = [g for g in (gap(t) for t in tasks) if g is not None]
    losers = [t.task for t in tasks if not beats(t, t.pixels)]
    targets: dict[str, dict[str, Any]] = {
        "beats_pixels": {"goal": "tuned beats the 16x16 pixel probe on every held-out task",
                         "holds": not losers, "failing": losers},
        "near_joint": {"goal": "mean gap to joint at most 2 points (5% relative for errors)",
                       "holds": float(np.mean(gaps)) <= 1.0 if gaps else None,  # None: no joint run
                       "mean_gap_units": round(float(np.mean(gaps)), 3) if gaps else None},
    }
    if baseline is not None:
        losses = {}
        for name, value in bundle.trained.items():
            if name in baseline.trained:
                sign = 1.0 if higher[name] else -1.0
                loss = sign * (baseline.trained[name] - value)
                losses[name] = round(100 * loss if higher[name] else 100 * loss / baseline.trained[name], 2)
        targets["trained_kept"] = {"goal": "trained tasks lose at most 1 point (error metrics: 5% relative)",
                                   "holds": all(v <= (1.0 if higher[k] else 5.0) for k, v in losses.items()),
                                   "loss": losses}
        ratio = bundle.bytes_per_sample / baseline.bytes_per_sample
        targets["bytes"] = {"goal": "bytes per sample at most 1.5x the baseline's", "holds": ratio <= 1.5,
                            "ratio": round(ratio, 3)}
    return targets


# ---- the run ----------------------------------------------------------------------------


def _measure(args: argparse.Namespace) -> TransferReport:
    import torch

    from models.data import load_dataset
    from models.metrics import METRICS, chance

    started = time.perf_counter()
    bundle = Path(args.bundle)
    ensure_bundle(bundle, args.data)
    quick = args.quick
    count = args.count or (1000 if quick else None)
    test_count = args.test_count or (300 if quick else None)
    tune_epochs = args.tune_epochs or (3 if quick else None)
    joint_epochs = args.joint_epochs if args.joint_epochs is not None else (1 if quick else None)
    torch.set_num_threads(args.threads)
    train = load_dataset(args.data, "train", count=count)
    val = load_dataset(args.data, "val", count=test_count)
    test = load_dataset(args.data, "test", count=test_count)
    wanted = args.tasks.split(",") if args.tasks else list(train.held_out)
    infos = [t for t in train.tasks if t.name in wanted]
    if not infos:
        raise ValueError(f"no held-out tasks to measure in {train.name!r}; name them with --tasks")

    from models.tune import TuneConfig

    facts = _freeze("bundle", bundle, train, val, test, args.threads)
    baseline = (_freeze("baseline", Path(args.baseline), train, val, test, args.threads)
                if args.baseline is not None else None)
    config = TuneConfig(threads=args.threads, **({"epochs": tune_epochs} if tune_epochs else {}))
    from cloud_server.cpus import available_cpus

    jobs = args.jobs or available_cpus()
    log.info("%d tunings%s in %d processes", len(infos) * (2 if baseline else 1),
             " and the joint run" if joint_epochs != 0 else "", jobs)
    try:
        with _pool(jobs) as pool:  # the longest job (joint) first, so it does not start last
            joint_job = (pool.submit(_joint, bundle, [t.name for t in infos], train, test, joint_epochs,
                                     args.threads) if joint_epochs != 0 else None)
            tuning = {(side, info.name): pool.submit(_tune_one, side, info, config) for side in _FROZEN for info in infos}
            tuned = {name: job.result() for (side, name), job in tuning.items() if side == "bundle"}
            baseline_tuned = {name: job.result() for (side, name), job in tuning.items() if side == "baseline"}
            joint = joint_job.result() if joint_job is not None else {}
    finally:
        _FROZEN.clear()
    for name, value in tuned.items():
        log.info("%s: tuned %.4f", name, value)
    results = []
    for info in infos:
        metric, higher_is_better = METRICS[info.kind]
        pixels = pixel_probe(info, train, test)
        results.append(TaskResult(info.name, info.kind, metric, higher_is_better, round(tuned[info.name], 4),
                                  round(pixels, 4), _rounded(joint.get(info.name)),
                                  _rounded(chance(info.kind, test.labels[info.name])),
                                  _rounded(baseline_tuned.get(info.name))))
        log.info("%s: tuned %.4f pixels %.4f joint %s", info.name, tuned[info.name], pixels, joint.get(info.name))
    higher = {t.name: METRICS[t.kind][1] for t in train.tasks}
    report = TransferReport(facts, baseline, results, judge(results, facts, baseline, higher), len(test),
                            len(train), round(time.perf_counter() - started, 1))
    if args.plot and args.out:
        _plot(report, Path(args.out).with_suffix(".png"))
    return report


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def to_json(report: TransferReport) -> dict[str, Any]:
    document = asdict(report)
    document["tasks"] = {t.pop("task"): t for t in document["tasks"]}
    document["machine"] = {"cpus": os.cpu_count(),
                           "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}
    return document


def render(report: TransferReport) -> str:
    base = report.baseline is not None
    title = (f"transfer suite on {report.bundle.path} ({report.bundle.objective}, "
             f"{report.bundle.bytes_per_sample:.1f} B/sample), {report.test_samples} test samples:")
    lines = [title, "",
             f"{'task':<11} {'metric':<9} {'tuned':>8} {'pixels':>8} {'joint':>8} {'chance':>8}"
             + (f" {'baseline':>9}" if base else "")]
    for t in report.tasks:
        cells = [t.tuned, t.pixels, t.joint, t.chance] + ([t.baseline_tuned] if base else [])
        shown = " ".join(f"{'-' if v is None else f'{v:.4f}':>8}" for v in cells)
        lines.append(f"{t.task:<11} {t.metric:<9} {shown}")
    lines.append("")
    lines.append("trained tasks: " + ", ".join(f"{k} {v:.4f}" for k, v in report.bundle.trained.items()))
    if report.baseline is not None:
        lines.append(f"baseline {report.baseline.path} ({report.baseline.objective}, "
                     f"{report.baseline.bytes_per_sample:.1f} B/sample): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in report.baseline.trained.items()))
    lines.append("")
    for name, target in report.targets.items():
        extra = {k: v for k, v in target.items() if k not in ("goal", "holds")}
        verdict = {True: "PASS", False: "FAIL", None: "----"}[target["holds"]]
        lines.append(f"{verdict}  {name}: {target['goal']}  {extra or ''}")
    lines.append(f"finished in {report.seconds:.0f} s")
    return "\n".join(lines)


def _plot(report: TransferReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 5
    rows = -(-len(report.tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    names = ["chance", "pixels", "tuned", "joint"] + (["baseline"] if report.baseline else [])
    for ax, t in zip(axes.ravel(), report.tasks):
        values = [t.chance, t.pixels, t.tuned, t.joint] + ([t.baseline_tuned] if report.baseline else [])
        ax.bar(names, [np.nan if v is None else v for v in values],
               color=["#bbb", "#888", "#1f77b4", "#2ca02c", "#ff7f0e"][: len(names)])
        ax.set_title(f"{t.task} ({t.metric}, {'higher' if t.higher_is_better else 'lower'} better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    for ax in axes.ravel()[len(report.tasks):]:
        ax.axis("off")
    figure.suptitle(f"transfer suite: {report.bundle.path} ({report.bundle.bytes_per_sample:.0f} B/sample)")
    save_figure(figure, path)


def run(args: argparse.Namespace) -> int:
    return emit_report(args, lambda: _measure(args), to_json, render)
