"""Codecs: exact round trips at every bit depth, and clear errors for bytes that do not fit."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from shared.codecs import codec_for, known_codecs
from shared.entropy import quantize_pmf
from shared.errors import CodecError
from shared.manifest import (
    CODEC_IDS,
    DEFAULT_CODEC,
    ENTROPY_CODECS,
    CodecName,
    EntropySpec,
    QuantSpec,
    RepresentationSpec,
)

ALL = ["raw-uint8", "packed", "rans", "rans-lanes"]
from shared.quantization import dequantize, quantize


def spec(codec: str, bits: int = 8, shape: tuple[int, int] = (16, 4)) -> RepresentationSpec:
    levels = 1 << bits
    entropy = None
    if codec in ENTROPY_CODECS:
        pmf = np.exp(-np.arange(levels) / 3.0)[None].repeat(shape[1], 0)
        entropy = EntropySpec(precision=15, freqs=quantize_pmf(pmf / pmf.sum(1, keepdims=True), 15).tolist())
    return RepresentationSpec(
        shape=shape,
        quant=QuantSpec(bits=bits, scale=1 / (levels - 1), zero_point=0),  # type: ignore[arg-type]
        codec=codec,  # type: ignore[arg-type]
        entropy=entropy,
        split_shape=(shape[0], 32),
    )


@pytest.mark.parametrize("codec", ALL)
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_round_trip_is_exact(codec: str, bits: int, batch: int) -> None:
    rng = np.random.default_rng(bits)
    coder = codec_for(spec(codec, bits, shape=(64, 8)))
    symbols = rng.integers(0, 1 << bits, (batch, 64, 8)).astype(np.uint8)
    assert np.array_equal(coder.decode(coder.encode(symbols), symbols.shape), symbols)


def test_names_ids_and_registry_agree() -> None:
    assert sorted(typing.get_args(CodecName)) == sorted(CODEC_IDS) == known_codecs() == sorted(ALL)
    assert len(set(CODEC_IDS.values())) == len(CODEC_IDS)
    assert CODEC_IDS == {"raw-uint8": 0, "packed": 1, "rans": 2, "rans-lanes": 3}, "wire ids never change"
    assert DEFAULT_CODEC in ENTROPY_CODECS


def test_packed_is_bits_over_eight_of_raw() -> None:
    symbols = np.full((1, 16, 4), 3, dtype=np.uint8)
    assert len(codec_for(spec("packed", 2)).encode(symbols)) == 16 * 4 * 2 // 8


def test_packed_layout_is_msb_first() -> None:
    coder = codec_for(spec("packed", 4, shape=(1, 2)))
    assert coder.encode(np.array([[[0x1, 0xA]]], dtype=np.uint8)) == b"\x1a"


@pytest.mark.parametrize("codec", ["raw-uint8", "packed"])
def test_wrong_length_says_expected_bytes(codec: str) -> None:
    coder = codec_for(spec(codec, 8))
    with pytest.raises(CodecError, match="expected 64 bytes for shape \\[1, 16, 4\\]"):
        coder.decode(b"\x00" * 63, (1, 16, 4))


@pytest.mark.parametrize("codec", ALL)
def test_shape_must_match_bundle(codec: str) -> None:
    coder = codec_for(spec(codec, 4))
    with pytest.raises(CodecError, match="does not match the bundle"):
        coder.decode(b"\x00" * 64, (1, 8, 4))


def test_symbols_outside_levels_are_refused() -> None:
    coder = codec_for(spec("raw-uint8", 4))
    with pytest.raises(CodecError, match="outside the 16 levels"):
        coder.encode(np.full((1, 16, 4), 16, dtype=np.uint8))
    with pytest.raises(CodecError, match="outside the 16 levels"):
        coder.decode(b"\xff" * 64, (1, 16, 4))


@pytest.mark.parametrize("codec", sorted(ENTROPY_CODECS))
def test_rans_without_tables_is_a_bundle_problem(codec: str) -> None:
    bad = spec("raw-uint8").model_copy(update={"codec": codec})
    with pytest.raises(CodecError, match="entropy tables"):
        codec_for(bad)
    wrong = spec(codec, 4).model_copy(update={"quant": QuantSpec(bits=8, scale=1.0, zero_point=0)})
    with pytest.raises(CodecError, match="rebuild the bundle"):
        codec_for(wrong)


@pytest.mark.parametrize("codec", sorted(ENTROPY_CODECS))
def test_rans_beats_raw_on_skewed_symbols(codec: str) -> None:
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.3, (8, 16, 4)) - 1, 255).astype(np.uint8)
    raw = codec_for(spec("raw-uint8")).encode(symbols)
    coded = codec_for(spec(codec)).encode(symbols)
    assert len(coded) < len(raw) / 2


@pytest.mark.parametrize("codec", sorted(ENTROPY_CODECS))
def test_entropy_codecs_refuse_symbols_outside_the_levels(codec: str) -> None:
    coder = codec_for(spec(codec, 4))
    with pytest.raises(CodecError, match="outside the 16 levels"):
        coder.encode(np.full((1, 16, 4), 16, dtype=np.uint8))


def test_rans_lanes_reads_nothing_else() -> None:
    rng = np.random.default_rng(5)
    symbols = rng.integers(0, 16, (2, 16, 4)).astype(np.uint8)
    old = codec_for(spec("rans", 4)).encode(symbols)
    with pytest.raises(CodecError, match="re-encode it with the bundle's tables"):
        codec_for(spec("rans-lanes", 4)).decode(old, symbols.shape)


def test_quantize_dequantize_round_to_nearest_level() -> None:
    quant = QuantSpec(bits=4, scale=1 / 15, zero_point=0)
    z = np.array([0.0, 0.03, 0.05, 0.51, 1.0, 1.7, -0.2], dtype=np.float32)
    symbols = quantize(z, quant)
    assert symbols.tolist() == [0, 0, 1, 8, 15, 15, 0]
    assert np.allclose(dequantize(symbols, quant), [0, 0, 1 / 15, 8 / 15, 1, 1, 0])
