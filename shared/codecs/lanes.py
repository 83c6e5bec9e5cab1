"""rans-lanes: interleaved rANS lanes (``shared.entropy.lanes``), the default for new bundles."""

from __future__ import annotations

from shared.codecs.base import Codec, Symbols, register
from shared.entropy import LanesCoder, cdf_from_freqs, validate_freqs
from shared.errors import CodecError
from shared.manifest import RepresentationSpec


@register
class RansLanesCodec(Codec):
    name = "rans-lanes"

    def __init__(self, spec: RepresentationSpec) -> None:
        super().__init__(spec)
        if spec.entropy is None:
            raise CodecError("codec 'rans-lanes' needs entropy tables in the manifest; rebuild the bundle")
        freqs = validate_freqs(spec.entropy.freqs, spec.entropy.precision)
        expected = (spec.shape[1], self.levels)
        if freqs.shape != expected:
            raise CodecError(
                f"entropy tables are {list(freqs.shape)}, the representation needs {list(expected)} "
                "(channels x levels); rebuild the bundle"
            )
        self.coder = LanesCoder(cdf_from_freqs(freqs), spec.entropy.precision)

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)  # uint8 of (B, N, C) below the levels: all the coder needs
        return self.coder.encode_checked(symbols)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        return self.coder.decode(payload, tuple(int(d) for d in shape))
