"""Integer tables and the rANS coder: golden bytes, round trips, errors, overhead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import entropy
from shared.entropy import (
    HEADER_BYTES,
    RansCoder,
    cdf_from_freqs,
    coder_for,
    decode,
    encode,
    ideal_bits,
    quantize_pmf,
    validate_cdf,
    validate_freqs,
)
from shared.errors import CodecError

GOLDEN = Path(__file__).parent / "golden"
FAST = settings(deadline=None, max_examples=60, derandomize=True)

Ints = npt.NDArray[np.int64]


def load_golden() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((GOLDEN / "rans_golden.json").read_text())["cases"]
    return cases


def make_freqs(rng: np.random.Generator, channels: int, levels: int, precision: int, kind: str) -> Ints:
    """Tables of several kinds, all through quantize_pmf so they are valid."""
    if kind == "uniform":
        pmf = np.ones((channels, levels))
    elif kind == "dirichlet":
        pmf = rng.dirichlet(np.full(levels, 0.3), size=channels)
    elif kind == "laplace":
        x = np.arange(levels)[None, :] - rng.uniform(0, levels, size=(channels, 1))
        pmf = np.exp(-np.abs(x) / rng.uniform(0.2, levels / 4, size=(channels, 1)))
    else:  # "spike": one symbol takes everything, the others get the minimum 1
        pmf = np.zeros((channels, levels))
        pmf[np.arange(channels), rng.integers(0, levels, size=channels)] = 1.0
    return quantize_pmf(pmf, precision)


def draw(rng: np.random.Generator, freqs: Ints, rows: int, fill: str) -> npt.NDArray[np.uint8]:
    channels, levels = freqs.shape
    if fill == "zeros":
        return np.zeros((rows, channels), dtype=np.uint8)
    if fill == "max":
        return np.full((rows, channels), levels - 1, dtype=np.uint8)
    if fill == "tails":  # only the rarest symbol of each channel
        return np.tile(np.argmin(freqs, axis=1).astype(np.uint8), (rows, 1))
    if fill == "uniform":
        return rng.integers(0, levels, size=(rows, channels)).astype(np.uint8)
    probs = freqs / freqs.sum(axis=1, keepdims=True)  # "table": the table's own distribution
    cols = [rng.choice(levels, size=rows, p=probs[c]) for c in range(channels)]
    return np.stack(cols, axis=1).reshape(rows, channels).astype(np.uint8)


# --- public surface ---------------------------------------------------------------


def test_public_surface_is_curated() -> None:
    assert sorted(entropy.__all__) == [
        "HEADER_BYTES",
        "LanesCoder",
        "MAX_LEVELS",
        "MAX_PRECISION",
        "MIN_LEVELS",
        "MIN_PRECISION",
        "RansCoder",
        "STATE_LOW",
        "cdf_from_freqs",
        "check_precision",
        "coder_for",
        "decode",
        "encode",
        "ideal_bits",
        "quantize_pmf",
        "validate_cdf",
        "validate_freqs",
    ]
    for name in entropy.__all__:
        assert hasattr(entropy, name), name


# --- golden bitstreams ------------------------------------------------------------


@pytest.mark.parametrize("case", load_golden(), ids=lambda case: str(case["name"]))
def test_golden_bitstream_is_unchanged(case: dict[str, Any]) -> None:
    precision = case["precision"]
    freqs = quantize_pmf(np.array(case["weights"], dtype=np.float64), precision)
    assert freqs.tolist() == case["freqs"], "quantize_pmf changed: manifests' tables would differ"
    cdf = cdf_from_freqs(freqs)
    symbols = np.array(case["symbols"], dtype=np.uint8)
    expected = (GOLDEN / case["file"]).read_bytes()
    payload = encode(symbols, cdf, precision)
    assert payload == expected, (
        f"{case['file']} changed: the rANS wire format is no longer compatible with "
        "payloads already in the field; if intended, bump the codec and rerun make_golden"
    )
    np.testing.assert_array_equal(decode(expected, cdf, precision, tuple(case["shape"])), symbols)


# --- tables -----------------------------------------------------------------------


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    precision=st.integers(8, 16),
    levels=st.sampled_from([4, 16, 256]),
    kind=st.sampled_from(["uniform", "dirichlet", "laplace", "spike"]),
)
def test_quantize_pmf_rows_sum_exactly_and_every_symbol_is_codable(
    seed: int, precision: int, levels: int, kind: str
) -> None:
    freqs = make_freqs(np.random.default_rng(seed), 3, levels, precision, kind)
    assert freqs.shape == (3, levels)
    assert np.all(freqs >= 1)
    assert np.all(freqs.sum(axis=1) == 1 << precision)
    validate_freqs(freqs, precision)
    cdf = cdf_from_freqs(freqs)
    assert np.all(cdf[:, 0] == 0) and np.all(cdf[:, -1] == 1 << precision)
    validate_cdf(cdf, precision)


def test_quantize_pmf_is_deterministic_and_scale_free() -> None:
    rng = np.random.default_rng(7)
    pmf = rng.dirichlet(np.full(256, 0.5), size=8)
    first = quantize_pmf(pmf, 15)
    np.testing.assert_array_equal(first, quantize_pmf(pmf.copy(), 15))
    np.testing.assert_array_equal(first, quantize_pmf(pmf * 4.0, 15))  # unnormalized rows are fine


def test_quantize_pmf_keeps_exact_proportions() -> None:
    freqs = quantize_pmf(np.array([[1.0, 1.0, 2.0, 4.0]]), 8)
    assert freqs.tolist() == [[32, 32, 64, 128]]


@pytest.mark.parametrize(
    ("pmf", "match"),
    [
        (np.ones(16), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (np.ones((2, 1)), "levels"),
        (np.ones((2, 512)), "levels"),
        (np.array([[0.5, np.nan, 0.5, 0.0]]), "NaN"),
        (np.array([[0.5, -0.1, 0.5, 0.1]]), "negative"),
        (np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]), "row 1 sums to 0"),
        (np.full((1, 4), 1e308), "float64 range"),
        ([["a", "b"]], "array of floats"),
    ],
)
def test_quantize_pmf_rejects_bad_pmfs(pmf: Any, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        quantize_pmf(pmf, 15)


def test_quantize_pmf_fits_256_levels_into_precision_8() -> None:
    freqs = quantize_pmf(np.r_[1000.0, np.zeros(255)][None, :], 8)
    assert freqs.tolist() == [[1] * 256]  # one slot per level: even the spike gets just 1


GOOD = cdf_from_freqs([[1, 1, 2, 252], [64, 64, 64, 64]])


@pytest.mark.parametrize(
    ("cdf", "precision", "match"),
    [
        (GOOD, 7, "precision 7 is outside 8..16"),
        (GOOD, 17, "precision 17 is outside 8..16"),
        (GOOD, 8.0, "precision must be an int"),
        (GOOD, True, "precision must be an int"),
        (GOOD, 9, r"totals 256, expected 2\*\*9 = 512"),
        (GOOD[0], 8, "must be 2-D"),
        (GOOD.astype(np.float64), 8, "must hold integers"),
        (GOOD[:0], 8, "no rows"),
        (GOOD + 1, 8, "starts at 1, expected 0"),
        (np.array([[0, 3, 2, 4, 256]]), 8, "not monotonic"),
        (np.array([[0, 1, 1, 4, 256]]), 8, "symbol 1 of channel 0 has frequency 0"),
        (np.array([[0, 300, -100, 4, 256]]), 8, "outside 0..2"),
        ([[0, 1], [0, 1, 2]], 8, "rectangular"),
    ],
)
def test_validate_cdf_says_what_is_wrong(cdf: Any, precision: Any, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        validate_cdf(cdf, precision)
    with pytest.raises(CodecError, match=match):
        encode(np.zeros((1, 2), dtype=np.uint8), cdf, precision)


@pytest.mark.parametrize(
    ("freqs", "match"),
    [
        ([[0, 2, 2, 252]], r"freqs\[0\]\[0\] is 0"),
        ([[-4, 4, 4, 252]], "is -4"),
        ([[1, 1, 1, 253], [1, 1, 1, 250]], "row 1 totals 253"),
        ([[256]], "1 symbol levels"),
        ([1, 1, 2, 252], "2-D"),
    ],
)
def test_validate_freqs_says_what_is_wrong(freqs: Any, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        validate_freqs(freqs, 8)


def test_validate_freqs_accepts_manifest_lists() -> None:
    table = validate_freqs([[1, 1, 2, 252]], 8)
    assert table.dtype == np.int64 and table.tolist() == [[1, 1, 2, 252]]


# --- round trips ------------------------------------------------------------------


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    precision=st.integers(8, 16),
    levels=st.sampled_from([4, 16, 256]),
    channels=st.integers(1, 8),
    rows=st.integers(0, 80),
    kind=st.sampled_from(["uniform", "dirichlet", "laplace", "spike"]),
    fill=st.sampled_from(["table", "uniform", "zeros", "max", "tails"]),
)
def test_decode_inverts_encode(
    seed: int, precision: int, levels: int, channels: int, rows: int, kind: str, fill: str
) -> None:
    rng = np.random.default_rng(seed)
    freqs = make_freqs(rng, channels, levels, precision, kind)
    cdf = cdf_from_freqs(freqs)
    symbols = draw(rng, freqs, rows, fill)
    payload = encode(symbols, cdf, precision)
    decoded = decode(payload, cdf, precision, symbols.shape)
    assert decoded.dtype == np.uint8 and decoded.shape == symbols.shape
    np.testing.assert_array_equal(decoded, symbols)


def reference_encode(symbols: npt.NDArray[np.uint8], cdf: Ints, precision: int) -> bytes:
    """A literal transcription of ryg_rans' rans_byte.h (RansEncPut, RansEncFlush), one state."""
    rans_byte_l = 1 << 23
    channels = cdf.shape[0]
    written = bytearray()  # ryg writes back to front: *--ptr = byte
    x = rans_byte_l
    for index in reversed(range(symbols.size)):
        c, symbol = index % channels, int(symbols.flat[index])
        start = int(cdf[c, symbol])
        freq = int(cdf[c, symbol + 1]) - start
        x_max = ((rans_byte_l >> precision) << 8) * freq
        while x >= x_max:
            written.insert(0, x & 0xFF)
            x >>= 8
        x = ((x // freq) << precision) + (x % freq) + start
    return x.to_bytes(4, "little") + bytes(written)


@settings(deadline=None, max_examples=25, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    precision=st.integers(8, 16),
    levels=st.sampled_from([4, 16, 256]),
    kind=st.sampled_from(["dirichlet", "laplace", "spike"]),
)
def test_bytes_match_the_reference_rans_byte_coder(seed: int, precision: int, levels: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    freqs = make_freqs(rng, 4, levels, precision, kind)
    cdf = cdf_from_freqs(freqs)
    symbols = draw(rng, freqs, 16, "uniform")
    assert encode(symbols, cdf, precision) == reference_encode(symbols, cdf, precision)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_any_integer_dtype_gives_the_same_bytes(dtype: type[np.integer[Any]]) -> None:
    rng = np.random.default_rng(3)
    cdf = cdf_from_freqs(make_freqs(rng, 8, 16, 15, "laplace"))
    symbols = rng.integers(0, 16, size=(2, 64, 8))
    assert encode(symbols.astype(dtype), cdf, 15) == encode(symbols.astype(np.uint8), cdf, 15)


def test_batched_shapes_and_writable_output() -> None:
    rng = np.random.default_rng(4)
    cdf = cdf_from_freqs(make_freqs(rng, 4, 256, 16, "dirichlet"))
    symbols = rng.integers(0, 256, size=(3, 5, 4)).astype(np.uint8)
    decoded = decode(encode(symbols, cdf, 16), cdf, 16, (3, 5, 4))
    np.testing.assert_array_equal(decoded, symbols)
    decoded[0, 0, 0] = 1  # callers may modify what they get back


def test_empty_input_is_just_the_header() -> None:
    cdf = cdf_from_freqs([[64, 64, 64, 64]] * 3)
    payload = encode(np.zeros((0, 3), dtype=np.uint8), cdf, 8)
    assert len(payload) == HEADER_BYTES
    assert decode(payload, cdf, 8, (0, 3)).shape == (0, 3)


def test_cache_follows_table_content_not_identity() -> None:
    cdf = cdf_from_freqs([[64, 64, 64, 64]])
    symbols = np.array([[0], [3], [1], [2]] * 8, dtype=np.uint8)
    before = encode(symbols, cdf, 8)
    cdf[0] = [0, 1, 2, 3, 256]  # mutate in place: the next call must use the new table
    after = encode(symbols, cdf, 8)
    assert before != after
    np.testing.assert_array_equal(decode(after, cdf, 8, symbols.shape), symbols)


def test_coder_object_matches_functions() -> None:
    rng = np.random.default_rng(5)
    cdf = cdf_from_freqs(make_freqs(rng, 8, 16, 15, "laplace"))
    coder = RansCoder(cdf, 15)
    assert (coder.channels, coder.levels, coder.precision) == (8, 16, 15)
    assert not coder.cdf.flags.writeable
    symbols = rng.integers(0, 16, size=(64, 8))
    assert coder.encode(symbols) == encode(symbols, cdf, 15)
    assert coder_for(cdf, 15) is coder_for(cdf.copy(), 15)
    freqs = np.diff(cdf, axis=1).tolist()  # as a manifest's EntropySpec.freqs holds it
    assert RansCoder.from_freqs(freqs, 15).encode(symbols) == coder.encode(symbols)


# --- errors -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded() -> tuple[Ints, npt.NDArray[np.uint8], bytes]:
    rng = np.random.default_rng(6)
    freqs = make_freqs(rng, 8, 16, 15, "laplace")
    cdf = cdf_from_freqs(freqs)
    symbols = draw(rng, freqs, 64, "table")
    return cdf, symbols, encode(symbols, cdf, 15)


def test_every_truncation_is_caught(coded: tuple[Ints, npt.NDArray[np.uint8], bytes]) -> None:
    cdf, symbols, payload = coded
    for size in range(len(payload)):
        with pytest.raises(CodecError, match="truncated or was coded with other tables"):
            decode(payload[:size], cdf, 15, symbols.shape)


@pytest.mark.parametrize("extra", [b"\x00", b"\xff\x17", bytes(40)])
def test_extra_bytes_are_caught(coded: tuple[Ints, npt.NDArray[np.uint8], bytes], extra: bytes) -> None:
    cdf, symbols, payload = coded
    with pytest.raises(CodecError, match="extra bytes"):
        decode(payload + extra, cdf, 15, symbols.shape)


def test_other_tables_or_shape_are_caught(coded: tuple[Ints, npt.NDArray[np.uint8], bytes]) -> None:
    cdf, symbols, payload = coded
    other = cdf_from_freqs(make_freqs(np.random.default_rng(99), 8, 16, 15, "laplace"))
    with pytest.raises(CodecError, match="re-encode it with the bundle's tables"):
        decode(payload, other, 15, symbols.shape)
    with pytest.raises(CodecError):
        decode(payload, cdf, 15, (63, 8))
    for shape in [(64, 4), (), (-1, 8), (8.0, 8), 512]:
        with pytest.raises(CodecError, match=r"not \(\.\.\., 8\)"):
            decode(payload, cdf, 15, shape)  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="outside"):
        decode(b"\x00\x00\x00\x00" + payload[4:], cdf, 15, symbols.shape)


@FAST
@given(garbage=st.binary(max_size=64))
def test_garbage_never_escapes_as_another_error(
    coded: tuple[Ints, npt.NDArray[np.uint8], bytes], garbage: bytes
) -> None:
    cdf, _, _ = coded
    try:
        decoded = decode(garbage, cdf, 15, (8, 8))
    except CodecError:
        return
    assert encode(decoded, cdf, 15) == garbage  # if it decodes, it is a real payload


# symbols a coder with BAD_SYMBOLS_TABLE must refuse, and what it says (TableCoder's check,
# so the rans-lanes tests use the same cases)
BAD_SYMBOLS_TABLE = [[64, 64, 64, 64], [1, 1, 1, 253]]
BAD_SYMBOLS = [
    (np.array([[0, 1], [300, 2]]), r"symbol 300 at index \(1, 0\) is outside the table's 4 levels"),
    (np.array([[0, -1]]), r"symbol -1 at index \(0, 1\)"),
    (np.array([[0, 4]], dtype=np.uint8), r"symbol 4 at index \(0, 1\)"),
    (np.zeros((2, 3), dtype=np.uint8), "do not end in the table's 2 channels"),
    (np.array(1), "do not end in the table's 2 channels"),
    (np.zeros((2, 2)), "must be integers"),
]


@pytest.mark.parametrize(("symbols", "match"), BAD_SYMBOLS)
def test_bad_symbols_are_refused(symbols: npt.NDArray[Any], match: str) -> None:
    cdf = cdf_from_freqs(BAD_SYMBOLS_TABLE)
    with pytest.raises(CodecError, match=match):
        encode(symbols, cdf, 8)


# --- size -------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [4, 16, 256])
@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "laplace", "spike"])
@pytest.mark.parametrize("precision", [12, 15, 16])
def test_coded_size_is_close_to_ideal(levels: int, kind: str, precision: int) -> None:
    rng = np.random.default_rng(levels * 1000 + precision)
    freqs = make_freqs(rng, 8, levels, precision, kind)
    symbols = draw(rng, freqs, 64, "table")  # 512 symbols from the table's own distribution
    ideal = ideal_bits(symbols, freqs, precision)
    size = len(encode(symbols, cdf_from_freqs(freqs), precision))
    assert size <= 1.03 * ideal / 8 + 16, f"{size} bytes for an ideal {ideal / 8:.1f}"


def test_ideal_bits_counts_minus_log2_of_each_probability() -> None:
    freqs = np.array([[128, 64, 32, 32]])
    assert ideal_bits(np.array([[0], [1], [2], [3]]), freqs, 8) == pytest.approx(1 + 2 + 3 + 3)
    with pytest.raises(CodecError, match=r"in \[0, 4\)"):
        ideal_bits(np.array([[4]]), freqs, 8)
