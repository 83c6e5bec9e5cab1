"""Codecs for quantized representations, by stable wire name: raw-uint8, packed, rans."""

from shared.codecs import packed, rans, raw
from shared.codecs.base import Codec, codec_for

__all__ = ["Codec", "codec_for", "packed", "rans", "raw"]
