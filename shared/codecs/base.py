"""The codec interface and its registry, keyed by stable wire names.

A codec turns quantized symbols of shape (B, N, C) into payload bytes and back. The
bundle manifest names one codec; the server accepts only that one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from shared.entropy import validate_freqs
from shared.errors import CodecError
from shared.manifest import RepresentationSpec

__all__ = ["Codec", "codec_for", "known_codecs", "register"]

Symbols = npt.NDArray[np.uint8]

_REGISTRY: dict[str, type[Codec]] = {}


class Codec(ABC):
    """Symbols (B, N, C) uint8 <-> bytes, for one representation spec."""

    name: ClassVar[str]

    def __init__(self, spec: RepresentationSpec) -> None:
        self.spec = spec
        self.levels = spec.quant.levels

    @abstractmethod
    def encode(self, symbols: Symbols) -> bytes:
        """Code a batch of symbols; raises ``CodecError`` for symbols outside the levels."""

    @abstractmethod
    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> Symbols:
        """Inverse of ``encode``; raises ``CodecError`` when the bytes do not fit ``shape``."""

    def entropy_tables(self) -> tuple[npt.NDArray[np.int64], int]:
        """The manifest's frequency tables (C, L) and their precision, checked against this
        representation, for an entropy codec; CodecError saying to rebuild the bundle when they
        are missing or do not fit."""
        entropy = self.spec.entropy
        if entropy is None:
            raise CodecError(f"codec {self.name!r} needs entropy tables in the manifest; rebuild the bundle")
        freqs = validate_freqs(entropy.freqs, entropy.precision)
        expected = (self.spec.shape[1], self.levels)
        if freqs.shape != expected:
            raise CodecError(
                f"entropy tables are {list(freqs.shape)}, the representation needs {list(expected)} "
                "(channels x levels); rebuild the bundle"
            )
        return freqs, entropy.precision

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or tuple(shape[1:]) != self.spec.shape or shape[0] < 1:
            raise CodecError(
                f"representation shape {list(shape)} does not match the bundle's "
                f"[B, {self.spec.shape[0]}, {self.spec.shape[1]}]; encode with the same bundle"
            )

    def check_symbols(self, symbols: Symbols) -> None:
        self.check_shape(symbols.shape)
        if symbols.dtype != np.uint8:
            raise CodecError(f"symbols must be uint8, got {symbols.dtype}; quantize them first")
        if symbols.size and int(symbols.max()) >= self.levels:
            raise CodecError(
                f"symbol {int(symbols.max())} is outside the {self.levels} levels of "
                f"{self.spec.quant.bits}-bit quantization; quantize with the bundle's spec"
            )


def register(cls: type[Codec]) -> type[Codec]:
    if cls.name in _REGISTRY:
        raise ValueError(f"codec name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def known_codecs() -> list[str]:
    """The registered codec names, sorted."""
    return sorted(_REGISTRY)


def codec_for(spec: RepresentationSpec) -> Codec:
    """The codec a representation spec names, ready to use."""
    try:
        cls = _REGISTRY[spec.codec]
    except KeyError:
        raise CodecError(f"unknown codec {spec.codec!r}; known: {sorted(_REGISTRY)}") from None
    return cls(spec)
