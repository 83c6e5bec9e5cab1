"""rans: entropy-coded symbols, with the integer tables the bundle carries."""

from __future__ import annotations

from shared.codecs.base import Codec, Symbols, register
from shared.entropy import RansCoder, cdf_from_freqs
from shared.manifest import RepresentationSpec


@register
class RansCodec(Codec):
    name = "rans"

    def __init__(self, spec: RepresentationSpec) -> None:
        super().__init__(spec)
        freqs, precision = self.entropy_tables()
        self.coder = RansCoder(cdf_from_freqs(freqs), precision)

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)
        return self.coder.encode(symbols)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        return self.coder.decode(payload, shape)
