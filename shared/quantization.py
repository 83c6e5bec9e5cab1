"""Affine scalar quantization of the bottleneck, identical on device and cloud."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.manifest import QuantSpec

__all__ = ["dequantize", "quantize"]


def quantize(z: npt.NDArray[np.floating], quant: QuantSpec) -> npt.NDArray[np.uint8]:
    """Float bottleneck -> integer symbols in [0, 2**bits). Rounds half to even, as torch does."""
    symbols = np.rint(np.asarray(z, dtype=np.float32) / np.float32(quant.scale)) + quant.zero_point
    clipped: npt.NDArray[np.uint8] = np.clip(symbols, 0, quant.levels - 1).astype(np.uint8)
    return clipped


def dequantize(symbols: npt.NDArray[np.integer], quant: QuantSpec) -> npt.NDArray[np.float32]:
    """Integer symbols -> the float values the decoders were trained on."""
    centered = symbols.astype(np.float32) - np.float32(quant.zero_point)
    return centered * np.float32(quant.scale)
