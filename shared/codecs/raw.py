"""raw-uint8: one byte per symbol, no compression beyond quantization."""

from __future__ import annotations

import math

import numpy as np

from shared.codecs.base import Codec, Symbols, register
from shared.errors import CodecError


@register
class RawCodec(Codec):
    name = "raw-uint8"

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)
        return np.ascontiguousarray(symbols).tobytes()

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        expected = math.prod(shape)
        if len(payload) != expected:
            raise CodecError(
                f"expected {expected} bytes for shape {list(shape)} uint8, got {len(payload)}"
            )
        symbols = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
        if symbols.size and int(symbols.max()) >= self.levels:
            raise CodecError(f"symbol {int(symbols.max())} is outside the {self.levels} levels")
        return symbols
