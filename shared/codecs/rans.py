"""rans: entropy-coded symbols, with the integer tables the bundle carries."""

from __future__ import annotations

from shared.codecs.base import Codec, Symbols, register
from shared.entropy import RansCoder, cdf_from_freqs, validate_freqs
from shared.errors import CodecError
from shared.manifest import RepresentationSpec


@register
class RansCodec(Codec):
    name = "rans"

    def __init__(self, spec: RepresentationSpec) -> None:
        super().__init__(spec)
        if spec.entropy is None:
            raise CodecError("codec 'rans' needs entropy tables in the manifest; rebuild the bundle")
        freqs = validate_freqs(spec.entropy.freqs, spec.entropy.precision)
        expected = (spec.shape[1], self.levels)
        if freqs.shape != expected:
            raise CodecError(
                f"entropy tables are {list(freqs.shape)}, the representation needs {list(expected)} "
                "(channels x levels); rebuild the bundle"
            )
        self.coder = RansCoder(cdf_from_freqs(freqs), spec.entropy.precision)

    def encode(self, symbols: Symbols) -> bytes:
        self.check_symbols(symbols)
        return self.coder.encode(symbols)

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        self.check_shape(shape)
        return self.coder.decode(payload, shape)
