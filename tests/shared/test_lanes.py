"""rans-lanes: golden bytes, a reference coder written from the spec, round trips, errors, size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.entropy import LanesCoder, cdf_from_freqs, encode, ideal_bits, quantize_pmf
from shared.entropy.lanes_layout import information, lanes_for
from shared.errors import CodecError
from tests.shared.test_entropy import BAD_SYMBOLS, BAD_SYMBOLS_TABLE, draw, make_freqs

GOLDEN = Path(__file__).parent / "golden"
FAST = settings(deadline=None, max_examples=60, derandomize=True)
Ints = npt.NDArray[np.int64]


def golden_tables() -> dict[str, tuple[Ints, int]]:
    cases = json.loads((GOLDEN / "rans_golden.json").read_text())["cases"]
    return {c["name"]: (np.array(c["freqs"], dtype=np.int64), int(c["precision"])) for c in cases}


def golden_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((GOLDEN / "lanes_golden.json").read_text())["cases"]
    return cases


# --- the format, written out plainly from the module docstring -------------------------


def reference_encode(symbols: npt.NDArray[np.integer], freqs: Ints, precision: int) -> bytes:
    """One lane at a time, Python ints only; shares nothing with the coder but ``lanes_for``."""
    low, total = 1 << 16, 1 << precision
    cdf = cdf_from_freqs(freqs).tolist()
    channels, levels = freqs.shape
    shape = symbols.shape
    tokens = shape[-2] if len(shape) >= 2 else 1
    samples = int(np.prod(shape[:-2])) if len(shape) >= 3 else 1
    batch = symbols.reshape(samples, tokens, channels)
    lanes = lanes_for(tokens, channels, information(freqs, precision))
    mode = [int(np.argmax(row)) for row in freqs]
    digits = 0
    while levels ** (digits + 1) <= low:
        digits += 1
    finals: list[int] = []
    emitted: list[tuple[int, int, int]] = []  # (step, lane, word)
    for k in range(lanes):
        for b in range(batch.shape[0]):
            lane = k * batch.shape[0] + b
            seq = [(int(batch[b, n, c]), c) for n in range(k, tokens, lanes) for c in range(channels)]
            raw = 0 if k == 0 else min(digits, len(seq))
            coded, held = seq[: len(seq) - raw], seq[len(seq) - raw :]
            x = low + sum(((s - mode[c]) % levels) * levels**j for j, (s, c) in enumerate(held))
            for t in range(len(coded) - 1, -1, -1):
                s, c = coded[t]
                start, freq = cdf[c][s], cdf[c][s + 1] - cdf[c][s]
                if x >= freq << (32 - precision):
                    emitted.append((t, lane, x & 0xFFFF))
                    x >>= 16
                x = (x // freq) * total + x % freq + start
            finals.append(x)
    bits = ""
    for x in finals:
        v = x - low
        n = v.bit_length() if v.bit_length() <= 30 else 31
        bits += format(n, "05b")
    for x in finals:
        v = x - low
        if v.bit_length() > 30:
            bits += format(v, "032b")
        elif v:
            bits += format(v, "b")[1:]
    bits += "0" * (-len(bits) % 8)
    header = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    words = b"".join(w.to_bytes(2, "little") for _, _, w in sorted(emitted))
    return header + words


# --- golden bitstreams ---------------------------------------------------------------


@pytest.mark.parametrize("case", golden_cases(), ids=lambda case: str(case["name"]))
def test_golden_bitstream_is_unchanged(case: dict[str, Any]) -> None:
    freqs, precision = golden_tables()[case["table"]]
    symbols = np.array(case["symbols"], dtype=np.uint8).reshape(case["shape"])
    coder = LanesCoder(cdf_from_freqs(freqs), precision)
    expected = (GOLDEN / case["file"]).read_bytes()
    for vectorized in (False, True):
        assert coder.encode(symbols, vectorized=vectorized) == expected, (
            f"{case['file']} changed: the rans-lanes wire format is no longer compatible with "
            "payloads already in the field; if intended, register a new codec name and rerun make_golden"
        )
        np.testing.assert_array_equal(coder.decode(expected, tuple(case["shape"]), vectorized=vectorized), symbols)
    assert reference_encode(symbols, freqs, precision) == expected


def test_golden_cases_cover_every_lane_count_and_both_kernels() -> None:
    tables = golden_tables()
    seen = set()
    for case in golden_cases():
        freqs, precision = tables[case["table"]]
        shape = case["shape"]
        seen.add(lanes_for(shape[1], shape[2], information(freqs, precision)))
    assert seen >= {1, 4, 8}


# --- the reference, round trips, both kernels -------------------------------------


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    precision=st.integers(8, 16),
    levels=st.sampled_from([2, 3, 4, 16, 256]),
    channels=st.integers(1, 8),
    batch=st.integers(0, 4),
    tokens=st.integers(0, 80),
    kind=st.sampled_from(["uniform", "dirichlet", "laplace", "spike"]),
    fill=st.sampled_from(["table", "uniform", "zeros", "max", "tails"]),
)
def test_both_kernels_match_the_reference_and_invert(
    seed: int, precision: int, levels: int, channels: int, batch: int, tokens: int, kind: str, fill: str
) -> None:
    rng = np.random.default_rng(seed)
    freqs = make_freqs(rng, channels, levels, precision, kind)
    symbols = draw(rng, freqs, batch * tokens, fill).reshape(batch, tokens, channels)
    coder = LanesCoder(cdf_from_freqs(freqs), precision)
    payload = coder.encode(symbols, vectorized=False)
    assert coder.encode(symbols, vectorized=True) == payload
    assert reference_encode(symbols, freqs, precision) == payload
    for vectorized in (False, True):
        decoded = coder.decode(payload, symbols.shape, vectorized=vectorized)
        assert decoded.dtype == np.uint8 and decoded.shape == symbols.shape
        np.testing.assert_array_equal(decoded, symbols)


@pytest.mark.parametrize("levels", [4, 16, 256])
@pytest.mark.parametrize("tokens", [64, 72, 128])
def test_the_one_sample_kernel_matches_the_reference(levels: int, tokens: int) -> None:
    served = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        precision = [12, 15, 16][seed % 3]
        freqs = make_freqs(rng, 8, levels, precision, ["uniform", "dirichlet", "laplace"][seed % 3])
        symbols = draw(rng, freqs, tokens, ["table", "uniform", "tails"][seed // 3 % 3])[None]
        coder = LanesCoder(cdf_from_freqs(freqs), precision)
        served += coder.lanes(symbols.shape) == 8  # the unrolled eight-lane kernel's case
        payload = coder.encode(symbols)
        assert payload == reference_encode(symbols, freqs, precision) == coder.encode(symbols, vectorized=True)
        np.testing.assert_array_equal(coder.decode(payload, symbols.shape), symbols)
    assert served >= 2  # peaked 4-level tables get 4 lanes, rightly


def test_two_dimensional_and_flat_shapes_are_one_sample() -> None:
    rng = np.random.default_rng(1)
    freqs = make_freqs(rng, 4, 16, 15, "laplace")
    coder = LanesCoder(cdf_from_freqs(freqs), 15)
    rows = draw(rng, freqs, 70, "table")  # (70, 4): one sample of 70 tokens
    assert coder.encode(rows) == coder.encode(rows[None])
    np.testing.assert_array_equal(coder.decode(coder.encode(rows), rows.shape), rows)
    one = rows[0]  # (4,): one token
    np.testing.assert_array_equal(coder.decode(coder.encode(one), one.shape), one)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_any_integer_dtype_and_layout_gives_the_same_bytes(dtype: type[np.integer[Any]]) -> None:
    rng = np.random.default_rng(3)
    coder = LanesCoder(cdf_from_freqs(make_freqs(rng, 8, 16, 15, "laplace")), 15)
    for batch in (1, 5):  # the Python and the numpy kernels
        symbols = rng.integers(0, 16, size=(batch, 64, 8))
        expected = coder.encode(symbols.astype(np.uint8))
        assert coder.encode(symbols.astype(dtype)) == expected
        assert coder.encode(np.asfortranarray(symbols.astype(dtype))) == expected


def test_decoded_arrays_are_writable_and_independent() -> None:
    coder = LanesCoder(cdf_from_freqs([[64, 64, 64, 64]] * 2), 8)
    symbols = np.arange(2 * 64 * 2).reshape(2, 64, 2) % 4
    decoded = coder.decode(coder.encode(symbols), (2, 64, 2))
    decoded[0, 0, 0] = 3
    np.testing.assert_array_equal(coder.decode(coder.encode(symbols), (2, 64, 2)), symbols)


def test_empty_batches() -> None:
    coder = LanesCoder(cdf_from_freqs([[64, 64, 64, 64]] * 3), 8)
    assert coder.encode(np.zeros((0, 10, 3), dtype=np.uint8)) == b""
    assert coder.decode(b"", (0, 10, 3)).shape == (0, 10, 3)
    no_tokens = coder.encode(np.zeros((1, 0, 3), dtype=np.uint8))
    assert len(no_tokens) == 1  # one lane, state 2**16: a 5-bit zero length
    assert coder.decode(no_tokens, (1, 0, 3)).shape == (1, 0, 3)
    with pytest.raises(CodecError, match="empty batch must be empty"):
        coder.decode(b"\x00", (0, 10, 3))


# --- lanes -------------------------------------------------------------------------


def test_lane_count_follows_shape_and_information() -> None:
    bundle_like = quantize_pmf(np.exp(-np.abs(np.arange(16) - 7.5)[None].repeat(8, 0) / 2.0), 15)
    info = information(bundle_like, 15)
    assert lanes_for(64, 8, info) == 8  # the shipped shape: 64 tokens x 8 channels
    assert lanes_for(8, 8, info) == 1  # too few symbols for a second lane
    assert lanes_for(64, 2, info) == 2
    spike = quantize_pmf(np.eye(16)[[3] * 8], 15)
    assert lanes_for(64, 8, information(spike, 15)) == 1  # a lane would cost more than it carries


def test_information_is_close_to_the_entropy() -> None:
    rng = np.random.default_rng(8)
    for kind in ("uniform", "dirichlet", "laplace", "spike"):
        freqs = make_freqs(rng, 8, 16, 15, kind)
        probs = freqs / freqs.sum(axis=1, keepdims=True)
        entropy = float(-(probs * np.log2(probs)).sum())
        assert information(freqs, 15) / 2**16 == pytest.approx(entropy, abs=8 * 0.09)


# --- errors ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded() -> tuple[LanesCoder, npt.NDArray[np.uint8], bytes]:
    rng = np.random.default_rng(6)
    freqs = make_freqs(rng, 8, 16, 15, "laplace")
    symbols = draw(rng, freqs, 64, "table")[None]
    coder = LanesCoder(cdf_from_freqs(freqs), 15)
    return coder, symbols, coder.encode(symbols)


@pytest.mark.parametrize("vectorized", [False, True])
def test_every_truncation_is_caught(coded: tuple[LanesCoder, npt.NDArray[np.uint8], bytes], vectorized: bool) -> None:
    coder, symbols, payload = coded
    for size in range(len(payload)):
        with pytest.raises(CodecError, match="truncated"):
            coder.decode(payload[:size], symbols.shape, vectorized=vectorized)


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("extra", [b"\x00", b"\xff\x17", bytes(40)])
def test_extra_bytes_are_caught(
    coded: tuple[LanesCoder, npt.NDArray[np.uint8], bytes], extra: bytes, vectorized: bool
) -> None:
    coder, symbols, payload = coded
    with pytest.raises(CodecError, match="extra bytes|padded"):
        coder.decode(payload + extra, symbols.shape, vectorized=vectorized)


@pytest.mark.parametrize("vectorized", [False, True])
def test_foreign_payloads_are_caught(coded: tuple[LanesCoder, npt.NDArray[np.uint8], bytes], vectorized: bool) -> None:
    coder, symbols, payload = coded
    other = LanesCoder(cdf_from_freqs(make_freqs(np.random.default_rng(99), 8, 16, 15, "laplace")), 15)
    with pytest.raises(CodecError, match="re-encode it with the bundle's tables"):
        other.decode(payload, symbols.shape, vectorized=vectorized)
    old = encode(symbols[0], coder.cdf, 15)  # the same symbols, coded by the old rans codec
    with pytest.raises(CodecError, match="re-encode it with the bundle's tables"):
        coder.decode(old, symbols.shape, vectorized=vectorized)
    with pytest.raises(CodecError):
        coder.decode(payload, (1, 63, 8), vectorized=vectorized)
    for shape in [(64, 4), (), (-1, 8), (8.0, 8), 512, (True, 8)]:
        with pytest.raises(CodecError, match=r"not \(\.\.\., 8\)"):
            coder.decode(payload, shape, vectorized=vectorized)  # type: ignore[arg-type]


def test_a_corrupt_header_is_caught(coded: tuple[LanesCoder, npt.NDArray[np.uint8], bytes]) -> None:
    coder, symbols, payload = coded
    bad = bytes([payload[0] ^ 0x80]) + payload[1:]  # lane 0's length field
    with pytest.raises(CodecError):
        coder.decode(bad, symbols.shape)
    with pytest.raises(CodecError, match="impossible state"):
        coder.decode(b"\xf8" + bytes(60), (1, 8, 8))  # n = 31 for a value under 2**30


@FAST
@given(garbage=st.binary(max_size=80), vectorized=st.booleans())
def test_garbage_never_escapes_as_another_error(
    coded: tuple[LanesCoder, npt.NDArray[np.uint8], bytes], garbage: bytes, vectorized: bool
) -> None:
    coder, _, _ = coded
    for shape in [(1, 64, 8), (2, 8, 8), (1, 1, 8)]:
        try:
            decoded = coder.decode(garbage, shape, vectorized=vectorized)
        except CodecError:
            continue
        assert coder.encode(decoded) == garbage  # if it decodes, it is a real payload


@pytest.mark.parametrize(("symbols", "match"), BAD_SYMBOLS)
def test_bad_symbols_are_refused(symbols: npt.NDArray[Any], match: str) -> None:
    with pytest.raises(CodecError, match=match):
        LanesCoder(cdf_from_freqs(BAD_SYMBOLS_TABLE), 8).encode(symbols)


# --- size --------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [4, 16, 256])
@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "laplace", "spike"])
@pytest.mark.parametrize("precision", [12, 15, 16])
def test_coded_size_is_close_to_ideal(levels: int, kind: str, precision: int) -> None:
    rng = np.random.default_rng(levels * 1000 + precision)
    freqs = make_freqs(rng, 8, levels, precision, kind)
    coder = LanesCoder(cdf_from_freqs(freqs), precision)
    for _ in range(4):
        symbols = draw(rng, freqs, 64, "table")  # one sample of 64 x 8 from the table
        ideal = ideal_bits(symbols, freqs, precision)
        size = len(coder.encode(symbols[None]))
        assert size <= 1.03 * ideal / 8 + 16, f"{size} bytes for an ideal {ideal / 8:.1f}"


def test_a_batch_costs_what_its_samples_cost() -> None:
    rng = np.random.default_rng(12)
    freqs = make_freqs(rng, 8, 16, 15, "laplace")
    coder = LanesCoder(cdf_from_freqs(freqs), 15)
    batch = np.stack([draw(rng, freqs, 64, "table") for _ in range(32)])
    alone = sum(len(coder.encode(sample[None])) for sample in batch)
    assert abs(len(coder.encode(batch)) - alone) <= 32  # only the header's byte padding differs
