"""The multi-task split model: encoder + compressor on the device, decoders in the cloud.

Reads top-down: attention blocks, the two encoders, the compressor with its entropy
model, the task decoders, then the whole model that training optimizes.

    image (B,3,64,64) ─► encoder ─► h (B,N,D) ─► compressor ─► z (B,N,C) in [0,1]
        ─► quantize to 2**bits levels (straight-through in training)
        ─► decoder[task] ─► logits or values
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PREVIEW",
    "Block",
    "Compressor",
    "FallbackHead",
    "ModelConfig",
    "MultiTaskModel",
    "PreviewDecoder",
    "TaskDecoder",
    "TaskHead",
    "thumbnail",
]

PREVIEW = "preview"  # the preview decoder's output name, and its task name in a bundle


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = 64  # input H = W
    patch: int = 8  # pixels per token side: 64/8 -> 8x8 = 64 tokens
    dim: int = 96  # encoder width D
    depth: int = 2  # encoder blocks after the conv stem (attention for vit, residual conv for conv)
    heads: int = 4  # attention heads in every block
    encoder: Literal["vit", "conv"] = "vit"
    bottleneck: int = 8  # channels C per token that cross the wire
    bits: Literal[2, 4, 8] = 8  # quantization depth of the bottleneck
    decoder_dim: int = 64  # width of every cloud decoder
    decoder_depth: int = 1  # transformer blocks per decoder: more than a linear head
    preview: int = 0  # side of the input thumbnail a preview decoder rebuilds from the symbols (0: none);
    # trained by the distortion term, it keeps what no task asks for, and users can look at it

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def tokens(self) -> int:
        return self.grid * self.grid

    @property
    def levels(self) -> int:
        return 1 << self.bits


@dataclass(frozen=True)
class TaskHead:
    """What a decoder must produce for one task."""

    name: str
    kind: Literal["classification", "regression", "dense"]
    out: int  # classes, or regression values
    dense_size: int = 32  # output side of a dense map


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # (B, H, T, T): written out rather than fused so it exports to plain ONNX ops
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        y = att.softmax(dim=-1) @ v  # (B, H, T, C/H)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def conv_stem(cfg: ModelConfig) -> nn.Sequential:
    """Stride-2 conv stages from (B,3,H,W) down to the (B,D,grid,grid) token map.

    Early convolutions make a small transformer far more data-efficient when it is
    trained from scratch in minutes (Xiao et al., 2021), so both encoders start here.
    """
    layers: list[nn.Module] = []
    width, side, out = 3, cfg.image_size, cfg.dim // 4
    while side > cfg.grid:
        nxt = cfg.dim if side // 2 == cfg.grid else out
        layers += [nn.Conv2d(width, nxt, 3, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.GELU()]
        width, side, out = nxt, side // 2, out * 2
    return nn.Sequential(*layers)


class ViTEncoder(nn.Module):
    """Hybrid ViT: conv stem to an 8x8 token grid, positions, self-attention blocks: (B,N,D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stem = conv_stem(cfg)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.heads) for _ in range(cfg.depth)])
        self.ln = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x).flatten(2).transpose(1, 2) + self.pos  # (B, N, D)
        return self.ln(self.blocks(h))


class ConvEncoder(nn.Module):
    """All-convolutional option: the same stem, then residual 3x3 conv blocks: (B,N,D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stem = conv_stem(cfg)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1), nn.BatchNorm2d(cfg.dim), nn.GELU(),
                nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1), nn.BatchNorm2d(cfg.dim),
            )
            for _ in range(cfg.depth)
        )
        self.ln = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)  # (B, D, grid, grid)
        for block in self.blocks:
            h = F.gelu(h + block(h))
        return self.ln(h.flatten(2).transpose(1, 2))


class Compressor(nn.Module):
    """Bottleneck D -> C per token, squashed to [0, 1] so the quantizer has fixed range.

    Holds a per-channel categorical prior over the 2**bits levels: the rate term of the
    loss, and after training the source of the coder's integer tables.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.levels = cfg.levels
        self.proj = nn.Linear(cfg.dim, cfg.bottleneck)
        self.prior_logits = nn.Parameter(torch.zeros(cfg.bottleneck, cfg.levels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(h))  # (B, N, C) in (0, 1)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Straight-through rounding to the grid k/(L-1): forward exact, backward identity."""
        scaled = z * (self.levels - 1)
        return (scaled + (torch.round(scaled) - scaled).detach()) / (self.levels - 1)

    def rate_bits(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable bits per sample under the prior: -log2 p, p linearly interpolated
        between the two levels around z, so the encoder feels which levels are cheap."""
        scaled = (z * (self.levels - 1)).clamp(0, self.levels - 1)  # (B, N, C)
        low = scaled.floor().clamp(max=self.levels - 2)
        frac = scaled - low
        logp = F.log_softmax(self.prior_logits, dim=-1)  # (C, L)
        table = logp.t().unsqueeze(0).expand(z.shape[0], -1, -1)  # (B, L, C)
        lo = torch.gather(table, 1, low.long()).exp()
        hi = torch.gather(table, 1, low.long() + 1).exp()
        p = (1 - frac) * lo + frac * hi
        return -(p.clamp_min(1e-9).log2()).sum(dim=(1, 2))


class TaskDecoder(nn.Module):
    """Cloud side of one task: dequantized symbols (B,N,C) -> logits or values."""

    def __init__(self, cfg: ModelConfig, head: TaskHead) -> None:
        super().__init__()
        self.head = head
        d = cfg.decoder_dim
        self.grid = cfg.grid
        self.inp = nn.Linear(cfg.bottleneck, d)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(d, 4) for _ in range(cfg.decoder_depth)])
        self.ln = nn.LayerNorm(d)
        if head.kind == "dense":
            ups: list[nn.Module] = []
            side, width = cfg.grid, d
            while side < head.dense_size:
                ups += [nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.GELU()]
                side, width = side * 2, width // 2
            self.out = nn.Sequential(*ups, nn.Conv2d(width, head.out, 1))
        else:
            self.out = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, head.out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.blocks(self.inp(z) + self.pos))  # (B, N, d)
        if self.head.kind == "dense":
            b, _, d = x.shape
            return self.out(x.transpose(1, 2).reshape(b, d, self.grid, self.grid))  # (B, K, S, S)
        # mean and max over tokens: a small object lives in a few tokens, the mean dilutes it
        return self.out(torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1))  # (B, out)


class FallbackHead(nn.Module):
    """A small head the device can run itself: z (B,N,C) -> the task's output.

    A per-token MLP plus a learned position per token, then mean and max over tokens (max
    keeps what lives in a few tokens, the position term keeps where), then an MLP; dense
    tasks stay per token and are upsampled bilinearly. About 5k parameters at width 32.
    """

    def __init__(self, cfg: ModelConfig, head: TaskHead, width: int = 32) -> None:
        super().__init__()
        self.head = head
        self.grid = cfg.grid
        self.token = nn.Sequential(
            nn.Linear(cfg.bottleneck, width), nn.GELU(), nn.Linear(width, width), nn.GELU()
        )
        # Without it pooling forgets where a token was: a quadrant head stayed at chance.
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        if head.kind == "dense":
            self.out: nn.Module = nn.Linear(width, head.out)
        else:
            self.out = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, head.out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = self.token(z) + self.pos  # (B, N, W)
        if self.head.kind == "dense":
            b = t.shape[0]
            # (B, K, g, g)
            logits = self.out(t).transpose(1, 2).reshape(b, self.head.out, self.grid, self.grid)
            size = (self.head.dense_size, self.head.dense_size)
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, K, S, S)
        pooled: torch.Tensor = self.out(torch.cat([t.mean(dim=1), t.amax(dim=1)], dim=-1))  # (B, out)
        return pooled


class PreviewDecoder(nn.Module):
    """Cloud side of the distortion term: symbols (B,N,C) -> the input as a thumbnail (B,3,S,S).

    A task-agnostic target (rate-distortion training, as in learned image compression): what
    it makes the encoder keep is what tasks nobody planned for need. A thumbnail rather than
    the full image puts the distortion on colors, light and layout, not on sensor noise, at a
    rate the wire can afford. Each token paints its own (S/grid)^2 patch after one attention
    block has let it see its neighbours.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.preview % cfg.grid or cfg.preview < cfg.grid:
            raise ValueError(f"preview side {cfg.preview} must be a multiple of the {cfg.grid}-token grid")
        d = cfg.decoder_dim
        self.grid, self.patch = cfg.grid, cfg.preview // cfg.grid
        self.inp = nn.Linear(cfg.bottleneck, d)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.block = Block(d, 4)
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, 3 * self.patch * self.patch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, g, p = z.shape[0], self.grid, self.patch
        x = self.out(self.ln(self.block(self.inp(z) + self.pos)))  # (B, N, p*p*3)
        # (B, gy, gx, py, px, 3) -> (B, 3, gy*py, gx*px)
        return x.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)


def thumbnail(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B,3,H,W) -> (B,3,side,side) block means: the preview decoder's target."""
    return F.adaptive_avg_pool2d(x, side)


class MultiTaskModel(nn.Module):
    def __init__(self, cfg: ModelConfig, heads: list[TaskHead]) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder: nn.Module = ViTEncoder(cfg) if cfg.encoder == "vit" else ConvEncoder(cfg)
        self.compressor = Compressor(cfg)
        self.decoders = nn.ModuleDict({h.name: TaskDecoder(cfg, h) for h in heads})
        self.preview: PreviewDecoder | None = PreviewDecoder(cfg) if cfg.preview else None

    def device_forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the device ONNX computes: z in [0, 1], not yet quantized."""
        return self.compressor(self.encoder(x))

    def forward(self, x: torch.Tensor, quantize: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Returns per-task outputs (and ``"preview"`` when the model has one) and the bits
        per sample under the prior."""
        z = self.device_forward(x)
        rate = self.compressor.rate_bits(z)
        zq = self.compressor.quantize(z) if quantize else z
        outputs = {name: dec(zq) for name, dec in self.decoders.items()}
        if self.preview is not None:
            outputs[PREVIEW] = self.preview(zq)
        return outputs, rate
