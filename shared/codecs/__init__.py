"""Codecs for quantized representations, by stable wire name: raw-uint8, packed, rans, rans-lanes."""

from shared.codecs import lanes, packed, rans, raw
from shared.codecs.base import Codec, codec_for, known_codecs

__all__ = ["Codec", "codec_for", "known_codecs", "lanes", "packed", "rans", "raw"]
