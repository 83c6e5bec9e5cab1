"""Export a trained model to a bundle: device ONNX, one cloud ONNX per task, manifest.

The coder's integer tables come from the symbol histogram over the training split, so
the bundle's rate is what the real traffic will cost.
"""

from __future__ import annotations

import io
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.dataset import Dataset, TaskInfo
from models.model import PREVIEW, ModelConfig, MultiTaskModel, TaskHead
from models.train import MEAN, STD, TrainResult, metric_for, to_tensor
from shared.bundle import hash_files, write_manifest
from shared.entropy import quantize_pmf
from shared.manifest import (
    DEFAULT_CODEC,
    ENTROPY_CODECS,
    EntropySpec,
    InputSpec,
    Manifest,
    QuantSpec,
    RepresentationSpec,
    TaskSpec,
    device_fingerprint,
)
from shared.quantization import quantize

__all__ = [
    "CHECKPOINT_FILE",
    "DecoderGraph",
    "PreviewGraph",
    "export_bundle",
    "export_decoder",
    "load_checkpoint",
    "quant_spec",
    "representation_spec",
    "symbol_histogram",
]

CHECKPOINT_FILE = "training/model.pt"
ENTROPY_PRECISION = 15


class DeviceGraph(nn.Module):
    """image (B,3,H,W) normalized -> z (B,N,C) in [0, 1]."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.device_forward(image)


class DecoderGraph(nn.Module):
    """Dequantized z (B,N,C) -> task output in the task's units (regression de-standardized).

    Wraps any module that maps z to one task's output and carries that task's ``head``:
    a cloud :class:`~models.model.TaskDecoder`, or a device fallback head from tuning.
    Regression targets are trained standardized; ``mean`` and ``std`` undo that inside
    the exported graph, so the server and the device never need to know.
    """

    def __init__(self, decoder: nn.Module, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.decoder = decoder
        head: TaskHead = decoder.head  # type: ignore[assignment]  # TaskDecoder and FallbackHead carry one
        self.regression = head.kind == "regression"
        self.mean, self.std = mean, std

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(z)
        return out * self.std + self.mean if self.regression else out


class PreviewGraph(nn.Module):
    """Dequantized z (B,N,C) -> the preview as an RGB picture in [0, 1], (B,3,S,S): the
    preview decoder's normalized output with the input normalization undone."""

    def __init__(self, preview: nn.Module) -> None:
        super().__init__()
        self.preview = preview
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.preview(z)
        return (out * self.std + self.mean).clamp(0.0, 1.0)


def preview_spec(cfg: ModelConfig) -> TaskSpec:
    """The preview as a bundle task: answered only when a request names it."""
    return TaskSpec(name=PREVIEW, kind="image", output_shape=(3, cfg.preview, cfg.preview), metric="mse",
                    higher_is_better=False, file=f"cloud/{PREVIEW}.onnx", default=False)


def _onnx_bytes(module: nn.Module, example: torch.Tensor, input_name: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module.eval(),
            (example,),
            buffer,
            input_names=[input_name],
            output_names=["output"],
            dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def quant_spec(cfg: ModelConfig) -> QuantSpec:
    """z in [0, 1] onto 2**bits levels: symbol = round(z * (L - 1))."""
    return QuantSpec(bits=cfg.bits, scale=1.0 / (cfg.levels - 1), zero_point=0)


@torch.no_grad()
def symbol_histogram(model: MultiTaskModel, data: Dataset, limit: int = 4000) -> np.ndarray:
    """Counts (C, L) of each quantized symbol per channel over up to ``limit`` samples."""
    cfg = model.cfg
    quant = quant_spec(cfg)
    counts = np.zeros((cfg.bottleneck, cfg.levels), dtype=np.int64)
    for start in range(0, min(limit, len(data)), 256):
        z = model.device_forward(to_tensor(data.images[start : min(start + 256, limit)])).numpy()
        symbols = quantize(z, quant).reshape(-1, cfg.bottleneck)
        for c in range(cfg.bottleneck):
            counts[c] += np.bincount(symbols[:, c], minlength=cfg.levels)
    return counts


def representation_spec(cfg: ModelConfig, counts: np.ndarray, codec: str) -> RepresentationSpec:
    """What a bundle's manifest says about its representation; for ``rans`` the coder's
    tables come from the symbol counts (C, L) of :func:`symbol_histogram`, add-half smoothed
    so that no symbol the training split never showed is uncodable."""
    entropy = None
    if codec in ENTROPY_CODECS:
        pmf = (counts + 0.5) / (counts + 0.5).sum(axis=1, keepdims=True)
        freqs = quantize_pmf(pmf, ENTROPY_PRECISION)
        entropy = EntropySpec(precision=ENTROPY_PRECISION, freqs=freqs.tolist())
    return RepresentationSpec(
        shape=(cfg.tokens, cfg.bottleneck),
        quant=quant_spec(cfg),
        codec=codec,  # type: ignore[arg-type]
        entropy=entropy,
        split_shape=(cfg.tokens, cfg.dim),
    )


@torch.no_grad()
def measured_rate(model: MultiTaskModel, data: Dataset, representation: RepresentationSpec,
                  samples: int = 256) -> float:
    """Mean payload bytes per sample with the bundle's own codec, each sample coded alone."""
    from shared.codecs import codec_for

    codec = codec_for(representation)
    z = model.device_forward(to_tensor(data.images[:samples])).numpy()
    symbols = quantize(z, representation.quant)
    return float(np.mean([len(codec.encode(symbols[i : i + 1])) for i in range(len(symbols))]))


def task_spec(head: TaskHead, info: TaskInfo, cfg: ModelConfig) -> TaskSpec:
    metric, higher = metric_for(head.kind)
    if head.kind == "dense":
        output_shape: tuple[int, ...] = (head.out, head.dense_size, head.dense_size)
    else:
        output_shape = (head.out,)
    return TaskSpec(
        name=head.name,
        kind=head.kind,
        classes=info.classes,
        units=info.units,
        output_shape=output_shape,
        metric=metric,
        higher_is_better=higher,
        file=f"cloud/{head.name}.onnx",
    )


def export_decoder(result: TrainResult, head: TaskHead, bundle_dir: Path) -> None:
    cfg = result.model.cfg
    mean, std = result.targets.get(head.name, (0.0, 1.0))
    graph = DecoderGraph(result.model.decoders[head.name], mean, std)
    example = torch.rand(2, cfg.tokens, cfg.bottleneck)
    (bundle_dir / "cloud" / f"{head.name}.onnx").write_bytes(_onnx_bytes(graph, example, "z"))


def save_checkpoint(result: TrainResult, path: Path) -> None:
    """Tensors and plain values only, so it loads with ``weights_only=True``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "config": asdict(result.model.cfg),
            "heads": [asdict(h) for h in result.heads],
            "targets": {k: list(v) for k, v in result.targets.items()},
            "state": result.model.state_dict(),
        },
        path,
    )


def load_checkpoint(bundle_dir: str | Path) -> TrainResult:
    """The torch model a bundle was exported from (for local reference runs and tuning)."""
    saved = torch.load(Path(bundle_dir) / CHECKPOINT_FILE, weights_only=True)
    cfg = ModelConfig(**saved["config"])
    heads = [TaskHead(**h) for h in saved["heads"]]
    model = MultiTaskModel(cfg, heads)
    model.load_state_dict(saved["state"])
    model.eval()
    targets = {k: (float(v[0]), float(v[1])) for k, v in saved["targets"].items()}
    return TrainResult(model, heads, targets, 0.0)


def export_bundle(
    result: TrainResult,
    train_data: Dataset,
    out: str | Path,
    name: str = "default",
    version: int = 1,
    codec: str = DEFAULT_CODEC,
    training: dict[str, float | int | str] | None = None,
) -> Manifest:
    """Write a complete bundle directory and return its manifest."""
    bundle_dir = Path(out)
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    (bundle_dir / "device").mkdir(parents=True)
    (bundle_dir / "cloud").mkdir()
    model, cfg = result.model, result.model.cfg

    encoder_onnx = _onnx_bytes(DeviceGraph(model), torch.randn(2, 3, cfg.image_size, cfg.image_size), "image")
    (bundle_dir / "device" / "encoder.onnx").write_bytes(encoder_onnx)
    for head in result.heads:
        export_decoder(result, head, bundle_dir)
    tasks = [task_spec(h, {t.name: t for t in train_data.tasks}[h.name], cfg) for h in result.heads]
    if model.preview is not None:
        example = torch.rand(2, cfg.tokens, cfg.bottleneck)
        (bundle_dir / "cloud" / f"{PREVIEW}.onnx").write_bytes(_onnx_bytes(PreviewGraph(model.preview), example, "z"))
        tasks.append(preview_spec(cfg))
    save_checkpoint(result, bundle_dir / CHECKPOINT_FILE)

    counts = symbol_histogram(model, train_data)
    representation = representation_spec(cfg, counts, codec)
    probs = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy_bits = float(-np.nansum(probs * np.log2(probs)) * cfg.tokens)
    facts: dict[str, float | int | str] = {
        "data": train_data.name,
        "encoder": cfg.encoder,
        "bits": cfg.bits,
        "objective": "tasks+rate+distortion" if model.preview is not None else "tasks+rate",
        "train_seconds": round(result.seconds, 1),
        "empirical_entropy_bits_per_sample": round(entropy_bits, 1),
    }
    facts["coded_bytes_per_sample"] = round(measured_rate(model, train_data, representation), 1)
    facts.update(training or {})
    manifest = Manifest(
        name=name,
        version=version,
        device_fingerprint=device_fingerprint(encoder_onnx, representation),
        input=InputSpec(shape=(3, cfg.image_size, cfg.image_size), mean=MEAN, std=STD),
        representation=representation,
        tasks=tasks,
        files=hash_files(bundle_dir),
        training=facts,
    )
    write_manifest(bundle_dir, manifest)
    return manifest
