"""Where each symbol of a ``rans-lanes`` batch goes, and how many lanes a sample gets.

A batch (B, N, C) is cut into K lanes per sample: lane k of sample b is lane l = k*B + b
of W = K*B, and holds tokens k, k+K, k+2K, ... visiting each token's channels in order, so
at step t = g*C + c every lane codes channel c. Lanes k >= 1 keep their last few symbols
(decoding order) as raw digits in their initial state. A ``Layout`` holds the index
arrays both directions need; it depends only on the shape, the levels and K, so it is
built once and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.entropy.lanes_kernels import LOW

__all__ = ["LANE_BITS", "LANE_SYMBOLS", "MAX_LANES", "Layout", "information", "lanes_for", "layout_for"]

MAX_LANES = 8
"""Lanes per sample at most."""
LANE_SYMBOLS = 64
"""Symbols a lane gets at least."""
LANE_BITS = 96
"""Expected bits of information a lane gets at least (see ``lanes_for``)."""


@dataclass(frozen=True)
class Layout:
    """Where each symbol of a (B, N, C) batch goes: which lane and step, coded or raw."""

    samples: int
    tokens: int
    channels: int
    lanes: int
    active: tuple[int, ...]
    """Lanes still coding at each step: always a prefix, as lane l = k*B + b."""
    source: npt.NDArray[np.intp]
    """(T, W) flat index into the symbols of lane l's symbol at step t (0 past its end)."""
    coded: npt.NDArray[np.bool_]
    """(T, W) whether lane l codes at step t, i.e. l < active[t]."""
    raw_source: npt.NDArray[np.intp]
    """(W, R) flat index of each lane's raw symbols (0 where unused)."""
    raw_channel: npt.NDArray[np.intp]
    raw_key: npt.NDArray[np.intp]
    """(W, R) j*C*L + channel*L for raw digit j; where unused, the start of the block of LOW
    (digit 0) or of 0 (the rest) at the end of ``LanesCoder._raw_table``: a symbol added to it
    indexes that table, and a row's entries sum to the lane's initial state."""
    raw_weight: npt.NDArray[np.int64]
    """(W, R) L**j for raw digit j, 0 where unused; so rows sum to what lane l holds."""
    raw_limit: npt.NDArray[np.int64]
    """(W,) L**raws: a lane's final state less LOW must be below it (1 for lane 0)."""
    size: int
    """Symbols in the batch, B * N * C."""
    raws: int
    """Raw symbols of lanes 1..K-1 when ``one_sample`` (they all have as many), else 0."""

    @property
    def one_sample(self) -> bool:
        """One sample in eight equal lanes: the case ``lanes_kernels.encode8`` serves."""
        return self.raws > 0

    @property
    def width(self) -> int:
        return self.lanes * self.samples

    def to_grid(self, symbols: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
        """(B, N, C) -> (T, W): the symbol lane l = k*B + b codes at step t = g*C + c."""
        groups = len(self.active) // self.channels
        padded = symbols.reshape(self.samples, self.tokens, self.channels)
        if groups * self.lanes != self.tokens:
            padded = np.zeros((self.samples, groups * self.lanes, self.channels), dtype=symbols.dtype)
            padded[:, : self.tokens] = symbols.reshape(self.samples, self.tokens, self.channels)
        view = padded.reshape(self.samples, groups, self.lanes, self.channels).transpose(1, 3, 2, 0)
        return view.reshape(len(self.active), self.width)

    def from_grid(self, grid: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> None:
        """The inverse of ``to_grid``, written into ``out`` (B, N, C)."""
        groups = len(self.active) // self.channels
        view = grid.reshape(groups, self.channels, self.lanes, self.samples).transpose(3, 0, 2, 1)
        out[...] = view.reshape(self.samples, groups * self.lanes, self.channels)[:, : self.tokens]

    @functools.cached_property
    def raw_channels(self) -> tuple[tuple[int, ...], ...]:
        """Per lane, the channels of its raw symbols, digit 0 first (pure-Python decoder)."""
        rows = zip(self.raw_channel.tolist(), self.raw_weight.tolist())
        return tuple(tuple(c for c, w in zip(*row) if w) for row in rows)

    @functools.cached_property
    def raw_limits(self) -> list[int]:
        return [int(v) for v in self.raw_limit.tolist()]

    @functools.cached_property
    def source_reversed(self) -> npt.NDArray[np.intp]:
        """``source`` with steps and lanes reversed, as the pure-Python encoder walks it."""
        return np.ascontiguousarray(self.source[::-1, ::-1])

    @functools.cached_property
    def python_target(self) -> npt.NDArray[np.intp]:
        """Where the pure-Python decoder's symbols go: the coding lanes' step by step, then the
        raw ones lane by lane, digit 0 first."""
        return np.concatenate([self.source[self.coded], self.raw_source[self.raw_weight > 0]])


def information(freqs: npt.NDArray[np.int64], precision: int) -> int:
    """Expected bits of one token (all C channels) under the table, in units of 2**-16 bits.

    Integer arithmetic only (log2 by bit length and a linear mantissa, within 0.09 bits), so
    device and cloud always agree on the lane count that depends on it."""
    total = 0
    for row in freqs.tolist():
        for f in row:
            b = f.bit_length() - 1
            log2 = (b << 16) + ((f << 16) >> b) - (1 << 16)
            total += f * ((precision << 16) - log2)
    return total >> precision


def lanes_for(tokens: int, channels: int, info: int) -> int:
    """Lanes per sample: the most of 8, 4, 2, 1 such that each lane gets at least 64 symbols
    and 96 bits of expected information (``information``). A lane costs up to ~21 bits
    however little it carries, so fewer lanes keep low-entropy samples within the budget."""
    limit = min(MAX_LANES, tokens, tokens * channels // LANE_SYMBOLS, tokens * info // (LANE_BITS << 16))
    lanes = 1
    while lanes * 2 <= limit:
        lanes *= 2
    return lanes


@functools.lru_cache(maxsize=32)
def layout_for(shape: tuple[int, ...], levels: int, lanes: int) -> Layout:
    """The layout of symbols of ``shape`` (..., N, C) with ``levels`` levels in ``lanes`` lanes."""
    channels = shape[-1]
    tokens = shape[-2] if len(shape) >= 2 else 1
    samples = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) >= 3 else 1
    digits = 0
    while levels ** (digits + 1) <= LOW:
        digits += 1
    groups = -(-tokens // lanes)
    counts = [((tokens - k + lanes - 1) // lanes) * channels for k in range(lanes)]
    raws = [0 if k == 0 else min(digits, n) for k, n in enumerate(counts)]
    coded = [n - r for n, r in zip(counts, raws)]  # non-increasing in k
    steps = coded[0]
    active = tuple(samples * sum(1 for a in coded if a > t) for t in range(steps))
    # Lane l = k*B + b at position i (decoding order) holds token (i // C)*K + k, channel i % C.
    k = np.repeat(np.arange(lanes), samples)
    b = np.tile(np.arange(samples), lanes)
    i = np.arange(groups * channels)[:, None]
    token = (i // max(channels, 1)) * lanes + k[None, :]
    flat = (b[None, :] * tokens + token) * channels + i % max(channels, 1)
    inside = token < tokens
    source = np.where(inside, flat, 0).astype(np.intp)  # (span, W)
    width = lanes * samples
    grid = np.arange(steps)[:, None] < np.repeat(coded, samples)[None, :]
    most = max(max(raws), 1)  # at least one column: it carries LOW (see raw_key)
    j = np.arange(most)[None, :]
    first = np.repeat(coded, samples)[:, None]
    used = j < np.repeat(raws, samples)[:, None]
    position = np.where(used, first + j, 0)
    picked = source[position, np.arange(width)[:, None]] if source.size else np.zeros(used.shape, np.intp)
    raw_source = np.where(used, picked, 0).astype(np.intp)
    raw_channel = np.where(used, position % max(channels, 1), 0).astype(np.intp)
    raw_weight = np.where(used, levels ** np.broadcast_to(j, used.shape).astype(np.int64), 0)
    raw_limit = np.repeat(np.array([levels**r for r in raws], dtype=np.int64), samples)
    size = samples * tokens * channels
    # Unused digit slots point past the digits: at the table's block of LOW (column 0, so each
    # lane's row sums to its initial state) or of zeros (the other columns).
    spare = np.where(j == 0, most, most + 1) * channels * levels
    raw_key = np.where(used, (j * channels + raw_channel) * levels, spare).astype(np.intp)
    even = samples == 1 and lanes == 8 and len(set(counts)) == 1 and 0 < raws[1] < counts[1]
    return Layout(samples, tokens, channels, lanes, active, source[:steps], grid, raw_source, raw_channel,
                  raw_key, raw_weight, raw_limit, size, raws[1] if even else 0)
