"""rans-lanes: interleaved rANS lanes (``shared.entropy.lanes``), the default for new bundles."""

from __future__ import annotations

from shared.codecs.base import Codec, Symbols, register
from shared.entropy import LanesCoder, cdf_from_freqs
from shared.manifest import RepresentationSpec


@register
class RansLanesCodec(Codec):
    name = "rans-lanes"

    def __init__(self, spec: RepresentationSpec) -> None:
        super().__init__(spec)
        freqs, precision = self.entropy_tables()
        self.coder = LanesCoder(cdf_from_freqs(freqs), precision)

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)  # uint8 of (B, N, C) below the levels: all the coder needs
        return self.coder.encode_checked(symbols)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        return self.coder.decode(payload, tuple(int(d) for d in shape))
