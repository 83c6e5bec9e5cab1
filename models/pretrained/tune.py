"""Device tuning on a text bundle: a new head on the frozen trunk's features.

    texts ─► device/tokenizer.json + device/encoder.onnx ─► quantize ─► codec round trip
          ─► dequantize ─► cloud/trunk.onnx ─► features (B,D)     exactly what the server computes
    features ─► SentenceHead (trained here) ─► cloud/<task>.onnx

Nothing of the device half or the trunk changes: the new version keeps the device fingerprint,
devices keep sending what they sent, and the server runs one trunk pass for all heads, old and new.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from models.metrics import score
from models.model import ModelConfig
from models.pretrained.onnx import export_head
from models.pretrained.split import SentenceHead
from models.textdata import TextDataset, load_text
from models.tune import TuneConfig, TuneResult, _head, _write_atomically, fit
from shared.bundle import read_bytes_checked, read_manifest
from shared.errors import ConfigError
from shared.manifest import TaskSpec
from shared.quantization import dequantize, quantize

__all__ = ["text_features", "tune_text_bundle"]

log = logging.getLogger(__name__)


def text_features(bundle_dir: str | Path, texts: list[str], batch_size: int = 128) -> npt.NDArray[np.float32]:
    """(N, D) trunk features of ``texts`` along the served path; texts of one token count are
    run together (no padding, so each is exactly what it would be alone)."""
    from device_client import DeviceEncoder

    encoder = DeviceEncoder(bundle_dir, threads=1)
    manifest = encoder.manifest
    if manifest.trunk is None or encoder.tokenizer is None:
        raise ConfigError(f"bundle {bundle_dir} is not a text bundle with a trunk; tune it with `devtune tune`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    trunk = ort.InferenceSession(read_bytes_checked(bundle_dir, manifest, manifest.trunk.file), options,
                                 providers=["CPUExecutionProvider"])
    tokens = [encoder.tokenizer(text)[0][0] for text in texts]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(tokens):
        by_length.setdefault(len(ids), []).append(i)
    features = np.zeros((len(texts), manifest.trunk.features), dtype=np.float32)
    quant = manifest.representation.quant
    for length, members in by_length.items():
        codec = encoder.codec_for_tokens(length)
        for start in range(0, len(members), batch_size):
            rows = members[start:start + batch_size]
            ids = np.stack([tokens[i] for i in rows])  # (b, T)
            mask = np.ones_like(ids)
            (z,) = encoder.session.run(None, {"input_ids": ids, "attention_mask": mask})
            sent = quantize(z, quant)  # (b, T, C), what the devices send ...
            symbols = codec.decode(codec.encode(sent), sent.shape)  # ... and the server decodes
            (out,) = trunk.run(None, {"z": dequantize(symbols, quant), "attention_mask": mask})
            features[rows] = out
    return features


def _onnx_metric(onnx: bytes, kind: str, features: npt.NDArray[np.float32], labels: np.ndarray) -> float:
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return score(kind, np.asarray(session.run(None, {"features": features})[0]), labels)


def tune_text_bundle(bundle_dir: str | Path, out: str | Path, task: str | None = None, data: str = "sentences",
                     config: TuneConfig | None = None, head_dim: int = 128,
                     replace_task: bool = False) -> TuneResult:
    """Train a head for ``task`` (default: the data's first held-out one) on the frozen trunk of a
    text bundle and write version + 1 to ``out``."""
    started = time.perf_counter()
    config = config or TuneConfig(epochs=30)
    source, target = Path(bundle_dir), Path(out)
    if source.resolve() == target.resolve():
        raise ConfigError(f"--out {target} is the bundle being tuned; write the new version to another directory")
    manifest = read_manifest(source)
    train: TextDataset = load_text(data, "train", config.count, config.seed)
    val: TextDataset = load_text(data, "val", config.val_count, config.seed)
    if task is None:
        if not train.held_out:
            raise ConfigError(f"data set {train.name!r} has no held-out task; name one with --task")
        task = train.held_out[0]
    head, info = _head(train, task)  # type: ignore[arg-type]  # a TextDataset has the tasks a Dataset has
    if task in manifest.task_names and not replace_task:
        raise ConfigError(f"bundle {manifest.name} v{manifest.version} already serves {task!r}; pick another "
                          "task, or retrain it with --replace")
    x_train, x_val = text_features(source, train.texts), text_features(source, val.texts)
    represented = time.perf_counter()
    log.info("trunk features of %d + %d texts in %.1f s", len(x_train), len(x_val), represented - started)

    torch.manual_seed(config.seed)
    net = SentenceHead(x_train.shape[1], head_dim, head)
    mean, std = fit(net, head, x_train, train.labels[task], config, desc=f"tune {task}")
    onnx = export_head(net, mean, std, x_train.shape[1], task)
    val_metric = _onnx_metric(onnx, head.kind, x_val, val.labels[task])
    from models.export import task_spec

    spec: TaskSpec = task_spec(head, info, ModelConfig()).model_copy(update={"source": "trunk"})
    tasks = [spec if t.name == task else t for t in manifest.tasks] if task in manifest.task_names \
        else [*manifest.tasks, spec]
    facts = dict(manifest.training)
    facts.update({f"tuned_{task}_data": train.name, f"tuned_{task}_samples": len(x_train),
                  f"tuned_{task}_val_{spec.metric}": round(val_metric, 4),
                  f"tuned_{task}_from_version": manifest.version})
    update: dict[str, object] = {"version": manifest.version + 1, "training": facts,
                                 "tasks": [t.model_dump(mode="json") for t in tasks]}
    new = _write_atomically(source, target, {spec.file: onnx}, manifest, update)
    if new.device_fingerprint != manifest.device_fingerprint:
        raise RuntimeError("the device fingerprint changed while tuning; this is a bug, please report it")
    log.info("tuned %s: val %s %.4f; wrote %s v%d to %s", task, spec.metric, val_metric, new.name, new.version,
             target)
    return TuneResult(manifest=new, bundle_dir=target, task=task, metric=spec.metric,
                      higher_is_better=spec.higher_is_better, val_metric=val_metric,
                      represent_seconds=represented - started, train_seconds=time.perf_counter() - represented,
                      seconds=time.perf_counter() - started)
