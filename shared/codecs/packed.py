"""packed: n-bit symbols packed densely, most significant bits first."""

from __future__ import annotations

import math

import numpy as np

from shared.codecs.base import Codec, Symbols, register
from shared.errors import CodecError


@register
class PackedCodec(Codec):
    name = "packed"

    def _nbytes(self, count: int) -> int:
        return math.ceil(count * self.spec.quant.bits / 8)

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)
        bits = self.spec.quant.bits
        # (count, 8) bit planes, keep the low `bits` of each symbol, then pack MSB first.
        planes = np.unpackbits(symbols.reshape(-1, 1), axis=1)[:, 8 - bits :]
        return np.packbits(planes.reshape(-1)).tobytes()

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        count = math.prod(shape)
        expected = self._nbytes(count)
        if len(payload) != expected:
            raise CodecError(
                f"expected {expected} bytes for shape {list(shape)} at "
                f"{self.spec.quant.bits} bits, got {len(payload)}"
            )
        bits = self.spec.quant.bits
        flat = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * bits]
        planes = np.zeros((count, 8), dtype=np.uint8)
        planes[:, 8 - bits :] = flat.reshape(count, bits)
        return np.packbits(planes, axis=1).reshape(shape)
