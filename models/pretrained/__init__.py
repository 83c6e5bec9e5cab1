"""Bring your own model: a pre-trained self-attention encoder split across device and cloud.

    load_encoder(SPEC)  ->  SplitModel(encoder, SplitConfig(split=N), heads)
        -> distill(...)     bottleneck trained to keep the trunk's output (no labels)
        -> fit_heads(...)   task heads on the frozen trunk
        -> export_split(...) / check_onnx(...)

See docs/bring-your-own-model.md.
"""

from models.pretrained.encoder import LoadedEncoder, load_encoder
from models.pretrained.fit import (
    DistillConfig,
    FitResult,
    HeadConfig,
    distill,
    evaluate,
    fit_heads,
    train_scratch,
)
from models.pretrained.onnx import SplitGraphs, check_onnx, export_split
from models.pretrained.split import SplitConfig, SplitModel

__all__ = [
    "DistillConfig",
    "FitResult",
    "HeadConfig",
    "LoadedEncoder",
    "SplitConfig",
    "SplitGraphs",
    "SplitModel",
    "check_onnx",
    "distill",
    "evaluate",
    "export_split",
    "fit_heads",
    "load_encoder",
    "train_scratch",
]
