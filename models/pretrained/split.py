"""A pre-trained encoder cut in two: device half, cloud trunk, task heads on the trunk.

    input_ids, mask (B,T) ─► embed ─► blocks[:N] ─► h (B,T,D) ─► compressor ─► z (B,T,C) in [0,1]   device
        ─► quantize to 2**bits levels (straight-through in training)
        ─► expander C->D ─► blocks[N:] ─► hidden (B,T,D) ─► masked mean ─► features (B,D)          cloud trunk
        ─► head[task] ─► logits or values                                                          cloud heads

The compressor is :class:`models.model.Compressor` (sigmoid bottleneck, straight-through
quantizer, learned prior); only the token axis is new: pad tokens are masked out of the rate.
The unsplit model (embed + every block, no bottleneck) is the distillation teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.model import Compressor, ModelConfig, TaskHead
from models.pretrained.encoder import LoadedEncoder, run_block
from shared.errors import ConfigError

__all__ = ["DeviceHalf", "SentenceHead", "SplitConfig", "SplitModel", "Trunk", "masked_mean"]


@dataclass(frozen=True)
class SplitConfig:
    split: int = 2  # blocks on the device: embed + blocks[:split]; the rest is the cloud trunk
    bottleneck: int = 16  # channels C per token that cross the wire
    bits: Literal[2, 4, 8] = 8  # quantization depth of the bottleneck
    head_dim: int = 128  # hidden width of every task head

    def compressor_config(self, dim: int) -> ModelConfig:
        """The image model's config, used only for what Compressor reads: D, C and bits."""
        return ModelConfig(dim=dim, bottleneck=self.bottleneck, bits=self.bits)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,T,D), (B,T) 0/1 -> (B,D): mean over real tokens, as sentence-transformers pools."""
    weights = mask.unsqueeze(-1)  # (B, T, 1)
    return (h * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def run_blocks(blocks: nn.ModuleList, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        h = run_block(block, h, mask)
    return h


class DeviceHalf(nn.Module):
    """What the device ONNX computes: token ids -> z (B,T,C) in [0, 1], not yet quantized."""

    def __init__(self, encoder: nn.Module, split: int, compressor: Compressor) -> None:
        super().__init__()
        self.encoder = encoder  # shared with the trunk: it holds all blocks, the device runs [:split]
        self.split = split
        self.compressor = compressor

    def features(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,T,D) at the split, before the bottleneck: what an uncompressed split would send."""
        h = self.encoder.embed(input_ids)  # type: ignore[operator]
        return run_blocks(self.encoder.blocks[: self.split], h, mask)  # type: ignore[index]

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.compressor(self.features(input_ids, mask))  # (B, T, C)


class Trunk(nn.Module):
    """The cloud's shared part: dequantized z (B,T,C) -> hidden (B,T,D) -> features (B,D)."""

    def __init__(self, encoder: nn.Module, split: int, bottleneck: int, dim: int) -> None:
        super().__init__()
        # two layers rather than one linear: the later blocks expect post-norm hidden states
        self.expander = nn.Sequential(nn.Linear(bottleneck, dim), nn.GELU(), nn.Linear(dim, dim))
        self.blocks = encoder.blocks[split:]  # type: ignore[index]

    def expand(self, zq: torch.Tensor) -> torch.Tensor:
        """(B,T,C) in [0,1] -> (B,T,D), the estimate of the features at the split; centred and
        scaled first, since z varies little around 0.5 early in training."""
        return self.expander((zq - 0.5) * 4.0)  # type: ignore[no-any-return]

    def hidden(self, zq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_blocks(self.blocks, self.expand(zq), mask)  # (B, T, D)

    def forward(self, zq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.hidden(zq, mask), mask)  # (B, D)


class SentenceHead(nn.Module):
    """One task on the trunk's features (B,D) -> logits or values (B, out)."""

    def __init__(self, dim: int, hidden: int, head: TaskHead) -> None:
        super().__init__()
        if head.kind == "dense":
            raise ConfigError(f"task {head.name!r} is dense; text tasks are classification or regression")
        self.head = head  # DecoderGraph reads it
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, head.out))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)  # type: ignore[no-any-return]


class SplitModel(nn.Module):
    def __init__(self, encoder: LoadedEncoder, cfg: SplitConfig, heads: list[TaskHead]) -> None:
        super().__init__()
        if not 1 <= cfg.split < encoder.depth:
            raise ConfigError(f"split {cfg.split} does not exist in {encoder.spec!r}: it has {encoder.depth} "
                              f"blocks, so the split must be 1..{encoder.depth - 1} (blocks on the device)")
        self.cfg = cfg
        self.dim = encoder.dim
        self.device_half = DeviceHalf(encoder.module, cfg.split, Compressor(cfg.compressor_config(encoder.dim)))
        self.trunk = Trunk(encoder.module, cfg.split, cfg.bottleneck, encoder.dim)
        self.heads = nn.ModuleDict({h.name: SentenceHead(encoder.dim, cfg.head_dim, h) for h in heads})

    @property
    def compressor(self) -> Compressor:
        return self.device_half.compressor

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return list(self.device_half.encoder.parameters())

    def rate_bits(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) bits per sample under the prior, real tokens only."""
        b, t, c = z.shape
        per_token = self.compressor.rate_bits(z.reshape(b * t, 1, c)).reshape(b, t)
        return (per_token * mask).sum(dim=1)

    def teacher(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The unsplit, uncompressed model's last hidden states (B,T,D)."""
        h = self.device_half.features(input_ids, mask)
        return run_blocks(self.trunk.blocks, h, mask)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, quantize: bool = True
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Per-task outputs, the trunk's hidden states (B,T,D) and bits per sample."""
        z = self.device_half(input_ids, mask)
        rate = self.rate_bits(z, mask)
        zq = self.compressor.quantize(z) if quantize else z
        hidden = self.trunk.hidden(zq, mask)
        features = masked_mean(hidden, mask)
        return {name: head(features) for name, head in self.heads.items()}, hidden, rate
