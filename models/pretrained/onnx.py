"""ONNX graphs of a split model: device half, shared cloud trunk, one head per task.

    device/encoder.onnx  input_ids, attention_mask (B,T) int64 -> z (B,T,C) float32 in [0, 1]
    cloud/trunk.onnx     z (B,T,C) dequantized, attention_mask (B,T) -> features (B,D)
    cloud/<task>.onnx    features (B,D) -> logits or values (regression de-standardized inside)

Batch and sequence length are dynamic. :func:`check_onnx` runs each graph in ONNX Runtime
against torch on the same inputs.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.export import DecoderGraph
from models.pretrained.fit import FitResult
from models.pretrained.split import SplitModel
from shared.errors import ConfigError

__all__ = ["SplitGraphs", "check_onnx", "export_head", "export_split"]


class _DeviceGraph(nn.Module):
    def __init__(self, model: SplitModel) -> None:
        super().__init__()
        self.device_half = model.device_half

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.device_half(input_ids, attention_mask.float())  # type: ignore[no-any-return]


class _TrunkGraph(nn.Module):
    def __init__(self, model: SplitModel) -> None:
        super().__init__()
        self.trunk = model.trunk

    def forward(self, z: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.trunk(z, attention_mask.float())  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SplitGraphs:
    device: bytes
    trunk: bytes
    heads: dict[str, bytes]

    def write(self, folder: str | Path) -> None:
        root = Path(folder)
        (root / "device").mkdir(parents=True, exist_ok=True)
        (root / "cloud").mkdir(parents=True, exist_ok=True)
        (root / "device" / "encoder.onnx").write_bytes(self.device)
        (root / "cloud" / "trunk.onnx").write_bytes(self.trunk)
        for name, graph in self.heads.items():
            (root / "cloud" / f"{name}.onnx").write_bytes(graph)


def _onnx_bytes(module: nn.Module, example: tuple[torch.Tensor, ...], inputs: dict[str, dict[int, str]],
                what: str) -> bytes:
    """Like models.export._onnx_bytes with several named inputs; export failures name the op."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(module.eval(), example, buffer, input_names=list(inputs), output_names=["output"],
                              dynamic_axes={**inputs, "output": {0: "batch"}}, opset_version=17, dynamo=False)
    except Exception as exc:  # torch.onnx raises several types (UnsupportedOperatorError, SymbolicValueError,
        # RuntimeError from tracing); all mean the same to a user: this graph does not export
        ops = sorted(set(re.findall(r"(?:aten|prim)::\w+", str(exc))))
        raise ConfigError(f"the {what} does not export to ONNX (opset 17){': op ' + ', '.join(ops) if ops else ''}"
                          f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); replace that op in the "
                          "encoder or move the split so it runs in the cloud") from exc
    return buffer.getvalue()


def export_split(result: FitResult) -> SplitGraphs:
    model = result.model
    model.eval()
    ids = torch.randint(5, 100, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    mask[1, 5:] = 0
    seq = {0: "batch", 1: "tokens"}
    device = _onnx_bytes(_DeviceGraph(model), (ids, mask), {"input_ids": seq, "attention_mask": seq},
                         f"device half (embed + blocks[:{model.cfg.split}] + compressor)")
    z = torch.rand(2, 7, model.cfg.bottleneck)
    trunk = _onnx_bytes(_TrunkGraph(model), (z, mask), {"z": seq, "attention_mask": seq},
                        f"cloud trunk (blocks[{model.cfg.split}:])")
    heads = {name: export_head(head, *result.targets.get(name, (0.0, 1.0)), model.dim, name)
             for name, head in model.heads.items()}
    return SplitGraphs(device, trunk, heads)


def export_head(head: nn.Module, mean: float, std: float, dim: int, name: str) -> bytes:
    """cloud/<task>.onnx: features (B, D) -> outputs, regression de-standardized inside."""
    return _onnx_bytes(DecoderGraph(head, mean, std), (torch.randn(2, dim),), {"features": {0: "batch"}},
                       f"head {name!r}")


def _run(graph: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


@torch.no_grad()
def check_onnx(result: FitResult, graphs: SplitGraphs, ids: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Largest |onnx - torch| of every graph on these token ids (B,T) and mask (B,T)."""
    model = result.model
    model.eval()
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask).float()
    z = model.device_half(t_ids, t_mask)
    zq = model.compressor.quantize(z)
    features = model.trunk(zq, t_mask)
    errors = {"device": float(np.abs(_run(graphs.device, {"input_ids": ids, "attention_mask": mask}) - z.numpy()).max()),
              "trunk": float(np.abs(_run(graphs.trunk, {"z": zq.numpy(), "attention_mask": mask})
                                    - features.numpy()).max())}
    for name, graph in graphs.heads.items():
        mean, std = result.targets.get(name, (0.0, 1.0))
        ref = DecoderGraph(model.heads[name], mean, std)(features).numpy()
        errors[name] = float(np.abs(_run(graph, {"features": features.numpy()}) - ref).max())
    return errors
