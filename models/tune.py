"""Device tuning: add a task to a bundle without touching the device half.

The device half (encoder ONNX, quantizer, codec tables) stays frozen, so every device
already in the field keeps working; only the cloud learns something new::

    images ─► device/encoder.onnx (ONNX Runtime, as on a device) ─► quantize ─► codec.encode
           ─► codec.decode ─► dequantize ─► z (B,N,C)        exactly what the server decodes
    z ─► TaskDecoder (trained here) ─► cloud/<task>.onnx
    z ─► FallbackHead (optional, small) ─► device/heads/<task>.onnx

The result is a new version of the same bundle (version + 1, same name, same device
fingerprint) that a running server can load next to the old one (``devtune push``);
the data plane then routes those devices to it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.data import load_dataset
from models.dataset import Dataset, TaskInfo
from models.export import CHECKPOINT_FILE, DecoderGraph, _onnx_bytes, task_spec
from models.metrics import score
from models.model import FallbackHead, ModelConfig, TaskDecoder, TaskHead
from models.progress import Progress, progress
from models.train import heads_for, task_loss, warmup_cosine
from shared.bundle import hash_files, read_manifest, write_manifest
from shared.errors import ConfigError
from shared.manifest import FallbackSpec, Manifest, TaskSpec

__all__ = [
    "FrozenSplit",
    "TuneConfig",
    "TuneResult",
    "add_fallback_heads",
    "bundle_config",
    "check_fallback_tasks",
    "fit",
    "frozen_split",
    "onnx_score",
    "represent",
    "train_decoder",
    "tune_bundle",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneConfig:
    epochs: int = 12  # passes over the frozen training split (cheap: no encoder in the loop)
    batch_size: int = 64
    lr: float = 2e-3  # peak AdamW learning rate, cosine-decayed after a short warmup
    weight_decay: float = 0.05
    seed: int = 0
    count: int | None = None  # training samples to use (None: the whole train split)
    val_count: int | None = None  # validation samples to score on (None: the whole split)
    decoder_depth: int | None = None  # transformer blocks of the new decoder (None: the bundle's)
    fallback_width: int = 32  # hidden width of a device fallback head
    fallback_epochs: int | None = None  # None: as many as the decoder
    threads: int | None = 1  # torch and ONNX Runtime threads (None: their defaults). These models are
    # too small to gain much from more, and on a busy machine extra threads wait on each other:
    # measured 3-10x slower with 2 threads than with 1 on 2 shared cores


@dataclass(frozen=True)
class FrozenSplit:
    """One data split as the server sees it: dequantized symbols and the labels."""

    z: npt.NDArray[np.float32]  # (B, N, C), after the full device -> wire -> cloud path
    dataset: Dataset


@dataclass(frozen=True)
class TuneResult:
    manifest: Manifest  # of the new version
    bundle_dir: Path
    task: str
    metric: str  # accuracy, mae or miou
    higher_is_better: bool
    val_metric: float  # the exported cloud/<task>.onnx on the frozen validation split
    fallback_metrics: dict[str, float] = field(default_factory=dict)  # task -> device head's val metric
    represent_seconds: float = 0.0  # device encoder + codec round trip over train and val
    train_seconds: float = 0.0  # decoder (and heads) training and export
    seconds: float = 0.0  # the whole tune, reading data to writing the bundle


# --- the frozen representation ------------------------------------------------------


def represent(bundle_dir: str | Path, images: npt.NDArray[np.uint8], batch_size: int = 256,
              threads: int = 0) -> npt.NDArray[np.float32]:
    """Images (B,H,W,3) uint8 -> z (B,N,C) exactly as the server would decode it.

    Runs the bundle's device half with ONNX Runtime (not torch), codes the symbols with
    the bundle's codec and decodes them again, so a tuned decoder never sees anything a
    real device could not send.
    """
    from device_client import DeviceEncoder
    from shared.quantization import dequantize

    encoder = DeviceEncoder(bundle_dir, threads=threads)  # threads 0: ONNX Runtime's default
    quant = encoder.manifest.representation.quant
    parts = []
    for start in progress(range(0, len(images), batch_size), "represent", unit="batch"):
        encoded = encoder.encode(list(images[start : start + batch_size]))
        # the server's side of the wire
        symbols = encoder.codec.decode(encoded.payload, encoded.symbols.shape)
        parts.append(dequantize(symbols, quant))
    return np.concatenate(parts)


def frozen_split(bundle_dir: str | Path, data: str, split: str, count: int | None = None, seed: int = 0,
                 threads: int | None = None) -> FrozenSplit:
    dataset = load_dataset(data, split, count=count, seed=seed)
    return FrozenSplit(represent(bundle_dir, dataset.images, threads=threads or 0), dataset)


def bundle_config(bundle_dir: str | Path, manifest: Manifest | None = None) -> ModelConfig:
    """The ModelConfig the bundle was trained with (decoder sizes), from its checkpoint if present."""
    path = Path(bundle_dir) / CHECKPOINT_FILE
    if path.is_file():
        saved = torch.load(path, weights_only=True, map_location="cpu")
        return ModelConfig(**saved["config"])
    manifest = manifest or read_manifest(bundle_dir)
    tokens, channels = manifest.representation.shape
    grid = math.isqrt(tokens)
    size = manifest.input.shape[1]
    bits = manifest.representation.quant.bits
    return ModelConfig(image_size=size, patch=size // grid, bottleneck=channels, bits=bits)


# --- training on frozen symbols -----------------------------------------------------


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads and restore the caller's setting after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(module: nn.Module, head: TaskHead, z: npt.NDArray[np.float32], labels: np.ndarray,
        config: TuneConfig, epochs: int | None = None, desc: str = "tune") -> tuple[float, float]:
    """Train ``module`` (z -> outputs) on frozen symbols; returns the (mean, std) regression
    targets were standardized with ((0, 1) for other kinds). ``desc`` names the progress bar."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    mean, std = 0.0, 1.0
    if head.kind == "regression":
        mean, std = float(labels.mean()), float(labels.std() + 1e-6)
        target = torch.from_numpy(((labels - mean) / std).astype(np.float32))
    else:
        target = torch.from_numpy(labels.astype(np.int64))
    inputs = torch.from_numpy(z)
    batch = min(config.batch_size, len(inputs))
    steps_per_epoch = max(1, len(inputs) // batch)
    total = steps_per_epoch * (epochs or config.epochs)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, total)
    module.train()
    bar: Progress[int] = progress(total=total, desc=desc, unit="step")
    with _torch_threads(config.threads), bar:
        for _ in range(epochs or config.epochs):
            order = torch.from_numpy(rng.permutation(len(inputs)))
            for step in range(steps_per_epoch):
                idx = order[step * batch : (step + 1) * batch]
                loss = task_loss(head, module(inputs[idx]), target[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
                bar.update(1)
    module.eval()
    return mean, std


def onnx_score(onnx: bytes, head: TaskHead, split: FrozenSplit) -> float:
    """The metric of an exported graph on a frozen split, run as the server runs it."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    outputs = np.concatenate([
        session.run(None, {"z": split.z[start : start + 256]})[0] for start in range(0, len(split.z), 256)
    ])
    return score(head.kind, outputs, split.dataset.labels[head.name])


def train_decoder(cfg: ModelConfig, head: TaskHead, train: FrozenSplit, val: FrozenSplit,
                   config: TuneConfig) -> tuple[bytes, float]:
    if config.decoder_depth is not None:
        cfg = replace(cfg, decoder_depth=config.decoder_depth)
    torch.manual_seed(config.seed)
    decoder = TaskDecoder(cfg, head)
    mean, std = fit(decoder, head, train.z, train.dataset.labels[head.name], config, desc=f"tune {head.name}")
    onnx = _onnx_bytes(DecoderGraph(decoder, mean, std), torch.from_numpy(train.z[:2]), "z")
    return onnx, onnx_score(onnx, head, val)


def _train_head(cfg: ModelConfig, head: TaskHead, train: FrozenSplit, val: FrozenSplit,
                config: TuneConfig) -> tuple[bytes, float]:
    torch.manual_seed(config.seed)
    net = FallbackHead(cfg, head, config.fallback_width)
    mean, std = fit(net, head, train.z, train.dataset.labels[head.name], config, config.fallback_epochs,
                    desc=f"device head {head.name}")
    onnx = _onnx_bytes(DecoderGraph(net, mean, std), torch.from_numpy(train.z[:2]), "z")
    return onnx, onnx_score(onnx, head, val)


# --- writing bundles ----------------------------------------------------------------


def _task_info(dataset: Dataset, task: str) -> TaskInfo:
    for info in dataset.tasks:
        if info.name == task:
            return info
    known = [t.name for t in dataset.tasks]
    raise ConfigError(f"task {task!r} is not in data set {dataset.name!r}; it has {known}")


def _head(dataset: Dataset, task: str) -> tuple[TaskHead, TaskInfo]:
    info = _task_info(dataset, task)
    (head,) = heads_for([info])
    return head, info


def check_fallback_tasks(fallback: Sequence[str], served: list[str]) -> None:
    """Refuse device heads for tasks the bundle will not serve (before any training starts)."""
    missing = [t for t in fallback if t not in served]
    if missing:
        raise ConfigError(
            f"fallback task(s) {missing} are not served by the bundle ({served}); a device head answers "
            "a task the cloud also serves, so tune the task first or pick one of those"
        )


def _write_atomically(source: Path, out: Path, fill: dict[str, bytes], base: Manifest,
                      update: dict[str, object]) -> Manifest:
    """Copy ``source`` (``out`` may be the same directory), add the ``fill`` files, write the
    manifest with fresh sha256s, then move into place: ``out`` is never half written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        for relpath, content in fill.items():
            (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
            (staging / relpath).write_bytes(content)
        fields = {**base.model_dump(mode="json"), **update, "files": hash_files(staging)}
        manifest = Manifest.model_validate(fields)
        write_manifest(staging, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tune_bundle(
    bundle_dir: str | Path,
    out: str | Path,
    task: str | None = None,
    data: str = "shapes",
    config: TuneConfig = TuneConfig(),
    fallback: Sequence[str] = (),
    replace_task: bool = False,
) -> TuneResult:
    """Train a decoder for ``task`` on the frozen representation and write version + 1 to ``out``.

    ``task`` defaults to the data set's first held-out task (``quadrant`` for shapes).
    ``fallback`` names tasks (the new one or ones the bundle serves) that also get a
    small head in the device half. The device fingerprint does not change.
    """
    started = time.perf_counter()
    source, target = Path(bundle_dir), Path(out)
    if source.resolve() == target.resolve():
        raise ConfigError(
            f"--out {target} is the bundle being tuned; write the new version to another directory"
        )
    manifest = read_manifest(source)
    if manifest.is_text:
        raise ConfigError(f"bundle {source} is a text bundle; tune it with models.pretrained.tune.tune_text_bundle "
                          "(devtune tune does)")
    cfg = bundle_config(source, manifest)
    train = frozen_split(source, data, "train", config.count, config.seed, config.threads)
    if task is None:
        if not train.dataset.held_out:
            raise ConfigError(f"data set {train.dataset.name!r} has no held-out task; name one with --task")
        task = train.dataset.held_out[0]
    head, info = _head(train.dataset, task)
    if task in manifest.task_names and not replace_task:
        raise ConfigError(
            f"bundle {manifest.name} v{manifest.version} already serves {task!r}; pick another task, "
            "or retrain it with --replace"
        )
    served = [t for t in manifest.task_names if t != task] + [task]
    check_fallback_tasks(fallback, served)
    val = frozen_split(source, data, "val", config.val_count, config.seed, config.threads)
    represented = time.perf_counter()
    log.info("frozen representation of %d + %d samples in %.1f s", len(train.z), len(val.z),
             represented - started)

    onnx, val_metric = train_decoder(cfg, head, train, val, config)
    spec = task_spec(head, info, cfg)
    log.info("tuned %s: val %s %.4f", task, spec.metric, val_metric)
    fill = {spec.file: onnx}
    head_specs, fallback_metrics = _train_heads(cfg, fallback, train, val, config, fill)
    trained = time.perf_counter()

    if task in manifest.task_names:  # retrained: keep the served order
        tasks: list[TaskSpec] = [spec if t.name == task else t for t in manifest.tasks]
    else:
        tasks = [*manifest.tasks, spec]
    fallbacks = [f for f in manifest.fallbacks if f.task not in fallback] + head_specs
    facts = dict(manifest.training)
    facts.update({
        f"tuned_{task}_data": train.dataset.name,
        f"tuned_{task}_samples": len(train.z),
        f"tuned_{task}_val_{spec.metric}": round(val_metric, 4),
        f"tuned_{task}_from_version": manifest.version,
        **{f"fallback_{name}_val_metric": round(value, 4) for name, value in fallback_metrics.items()},
    })
    update: dict[str, object] = {
        "version": manifest.version + 1,
        "tasks": [t.model_dump(mode="json") for t in tasks],
        "fallbacks": [f.model_dump(mode="json") for f in fallbacks],
        "training": facts,
    }
    new = _write_atomically(source, target, fill, manifest, update)
    if new.device_fingerprint != manifest.device_fingerprint:  # the promise to devices in the field
        raise RuntimeError("the device fingerprint changed while tuning; this is a bug, please report it")
    log.info("wrote %s v%d to %s", new.name, new.version, target)
    return TuneResult(
        manifest=new,
        bundle_dir=target,
        task=task,
        metric=spec.metric,
        higher_is_better=spec.higher_is_better,
        val_metric=val_metric,
        fallback_metrics=fallback_metrics,
        represent_seconds=represented - started,
        train_seconds=trained - represented,
        seconds=time.perf_counter() - started,
    )


def _train_heads(cfg: ModelConfig, tasks: Sequence[str], train: FrozenSplit, val: FrozenSplit,
                 config: TuneConfig, fill: dict[str, bytes]) -> tuple[list[FallbackSpec], dict[str, float]]:
    specs, metrics = [], {}
    for name in dict.fromkeys(tasks):
        head, _ = _head(train.dataset, name)
        onnx, metrics[name] = _train_head(cfg, head, train, val, config)
        spec = FallbackSpec(task=name, file=f"device/heads/{name}.onnx")
        fill[spec.file] = onnx
        specs.append(spec)
        log.info("device fallback head for %s: val metric %.4f", name, metrics[name])
    return specs, metrics


def add_fallback_heads(bundle_dir: str | Path, tasks: Sequence[str], data: str = "shapes",
                       config: TuneConfig = TuneConfig()) -> Manifest:
    """Give served ``tasks`` device fallback heads, in place and at the same version
    (for ``devtune train --fallback`` right after export)."""
    source = Path(bundle_dir)
    manifest = read_manifest(source)
    check_fallback_tasks(tasks, manifest.task_names)
    cfg = bundle_config(source, manifest)
    train = frozen_split(source, data, "train", config.count, config.seed, config.threads)
    val = frozen_split(source, data, "val", config.val_count, config.seed, config.threads)
    fill: dict[str, bytes] = {}
    specs, metrics = _train_heads(cfg, tasks, train, val, config, fill)
    fallbacks = [f for f in manifest.fallbacks if f.task not in tasks] + specs
    facts = {**manifest.training, **{f"fallback_{k}_val_metric": round(v, 4) for k, v in metrics.items()}}
    update: dict[str, object] = {
        "fallbacks": [f.model_dump(mode="json") for f in fallbacks],
        "training": facts,
    }
    return _write_atomically(source, source, fill, manifest, update)
