"""Integer frequency and CDF tables for the rANS coder, built and checked bit-exactly.

A table has one row per channel and one column per symbol level::

    freqs  (C, L)     every entry >= 1, every row sums to 2**precision
    cdf    (C, L+1)   cdf[:, 0] == 0, cdf[:, -1] == 2**precision, strictly increasing

Tables travel in bundle manifests, so the same pmf must give the same integers on
every platform: ``quantize_pmf`` uses only correctly rounded IEEE operations
(``math.fsum``, elementwise divide, ``rint``) and then fixes each row's sum with
integer arithmetic in a fixed order.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

from shared.errors import CodecError

__all__ = [
    "MAX_LEVELS",
    "MAX_PRECISION",
    "MIN_LEVELS",
    "MIN_PRECISION",
    "TableCoder",
    "cdf_from_freqs",
    "check_precision",
    "quantize_pmf",
    "validate_cdf",
    "validate_freqs",
]

MIN_PRECISION = 8
MAX_PRECISION = 16
MIN_LEVELS = 2
MAX_LEVELS = 256  # decoded symbols are uint8

Table = npt.NDArray[np.int64]


def check_precision(precision: object) -> int:
    """Return ``precision`` as an int, or raise CodecError if it is not one in 8..16."""
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise CodecError(
            f"precision must be an int in {MIN_PRECISION}..{MAX_PRECISION}, "
            f"got {precision!r} of type {type(precision).__name__}; pass the bundle's precision"
        )
    value = int(precision)
    if not MIN_PRECISION <= value <= MAX_PRECISION:
        raise CodecError(
            f"precision {value} is outside {MIN_PRECISION}..{MAX_PRECISION}; "
            "rebuild the table with a precision in that range"
        )
    return value


def _check_levels(levels: int, what: str) -> None:
    # MAX_LEVELS <= 2**MIN_PRECISION, so every level can always get a frequency >= 1.
    if not MIN_LEVELS <= levels <= MAX_LEVELS:
        raise CodecError(
            f"{what} has {levels} symbol levels; expected {MIN_LEVELS}..{MAX_LEVELS} "
            "(2**bits for 1..8 bits); check the table's shape"
        )


def _as_integer_table(table: object, what: str, width_name: str) -> Table:
    try:
        array = np.asarray(table)
    except (TypeError, ValueError) as exc:  # ragged rows, for instance
        raise CodecError(f"{what} must be a rectangular integer table: {exc}") from exc
    if array.ndim != 2:
        raise CodecError(
            f"{what} must be 2-D (channels, {width_name}), got shape {list(array.shape)}; "
            "pass one row per channel"
        )
    if array.dtype.kind not in "iu":
        raise CodecError(
            f"{what} must hold integers, got dtype {array.dtype}; build it with quantize_pmf / cdf_from_freqs"
        )
    if array.shape[0] == 0:
        raise CodecError(f"{what} has no rows; it needs one row per channel")
    return array.astype(np.int64)


def quantize_pmf(pmf: npt.ArrayLike, precision: int = 15) -> Table:
    """Float pmf (C, L) -> integer frequencies (C, L), each >= 1, rows summing to 2**precision.

    Rows need not be normalized; each is divided by its exactly rounded sum. Each
    frequency is ``max(1, rint(p * 2**precision))``; the row's surplus or deficit is
    then taken from / given to the largest entries (ties: lowest index first), which
    costs the least rate, never letting an entry fall below 1.
    """
    precision = check_precision(precision)
    total = 1 << precision
    try:
        probs = np.asarray(pmf, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"pmf must be an array of floats (channels, levels): {exc}") from exc
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise CodecError(
            f"pmf must be 2-D (channels, levels) with at least one channel, got shape {list(probs.shape)}"
        )
    _check_levels(probs.shape[1], "pmf")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise CodecError("pmf holds NaN, inf or negative values; pass non-negative probabilities")
    # math.fsum is exactly rounded, so the row sums cannot depend on numpy's summation order.
    try:
        row_sums = np.array([math.fsum(row) for row in probs.tolist()], dtype=np.float64)
    except OverflowError:
        raise CodecError("pmf rows sum past the float64 range; divide the pmf by its maximum first") from None
    if not np.all(np.isfinite(row_sums)):
        raise CodecError("pmf rows sum past the float64 range; divide the pmf by its maximum first")
    empty = np.flatnonzero(row_sums <= 0)
    if empty.size:
        raise CodecError(f"pmf row {int(empty[0])} sums to 0; every channel needs some mass")
    scaled = np.rint(probs / row_sums[:, None] * float(total))  # * 2**k is exact
    freqs = np.maximum(scaled, 1.0).astype(np.int64)
    for row in freqs:
        _fix_row_sum(row, total)
    return freqs


def _fix_row_sum(row: Table, total: int) -> None:
    """Make ``row`` sum to ``total`` in place, adjusting the largest entries first."""
    values = [int(v) for v in row]
    delta = total - sum(values)
    if delta == 0:
        return
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    if delta > 0:
        values[order[0]] += delta
    else:
        # Possible because len(values) <= total, so sum(values) - len(values) >= -delta.
        need = -delta
        for i in order:
            take = min(need, values[i] - 1)
            values[i] -= take
            need -= take
            if need == 0:
                break
    row[:] = values


def cdf_from_freqs(freqs: npt.ArrayLike) -> Table:
    """Frequencies (C, L) -> cumulative table (C, L+1) with cdf[:, 0] == 0."""
    table = _as_integer_table(freqs, "freqs", "levels")
    cdf = np.zeros((table.shape[0], table.shape[1] + 1), dtype=np.int64)
    np.cumsum(table, axis=1, out=cdf[:, 1:])
    return cdf


def validate_freqs(freqs: npt.ArrayLike, precision: int) -> Table:
    """Check a frequency table (e.g. from a manifest); return it as int64 or raise CodecError."""
    precision = check_precision(precision)
    table = _as_integer_table(freqs, "freqs", "levels")
    _check_levels(table.shape[1], "freqs")
    bad = np.argwhere((table < 1) | (table > 1 << precision))
    if bad.size:
        channel, symbol = (int(v) for v in bad[0])
        raise CodecError(
            f"freqs[{channel}][{symbol}] is {int(table[channel, symbol])}; every frequency must "
            f"be in 1..2**{precision} so each symbol is codable; rebuild it with quantize_pmf"
        )
    _check_totals(table.sum(axis=1), precision, "freqs row")
    return table


def validate_cdf(cdf: npt.ArrayLike, precision: int) -> Table:
    """Check a cumulative table; return it as int64 or raise CodecError saying what is wrong."""
    precision = check_precision(precision)
    table = _as_integer_table(cdf, "cdf", "levels + 1")
    _check_levels(table.shape[1] - 1, "cdf")
    starts = np.flatnonzero(table[:, 0] != 0)
    if starts.size:
        channel = int(starts[0])
        raise CodecError(
            f"cdf row {channel} starts at {int(table[channel, 0])}, expected 0; "
            "build the cdf with cdf_from_freqs"
        )
    _check_totals(table[:, -1], precision, "cdf row")
    outside = np.argwhere((table < 0) | (table > 1 << precision))
    if outside.size:
        channel, symbol = (int(v) for v in outside[0])
        raise CodecError(
            f"cdf[{channel}][{symbol}] is {int(table[channel, symbol])}, outside 0..2**{precision}; "
            "build the cdf with cdf_from_freqs"
        )
    steps = np.diff(table, axis=1)
    falling = np.argwhere(steps < 0)
    if falling.size:
        channel, symbol = (int(v) for v in falling[0])
        raise CodecError(
            f"cdf row {channel} is not monotonic: it falls from {int(table[channel, symbol])} "
            f"to {int(table[channel, symbol + 1])} at symbol {symbol}; build it with cdf_from_freqs"
        )
    flat = np.argwhere(steps == 0)
    if flat.size:
        channel, symbol = (int(v) for v in flat[0])
        raise CodecError(
            f"symbol {symbol} of channel {channel} has frequency 0 in the cdf, so it could "
            "not be coded; rebuild the table with quantize_pmf so every frequency is >= 1"
        )
    return table


def _check_totals(totals: Table, precision: int, what: str) -> None:
    wrong = np.flatnonzero(totals != 1 << precision)
    if wrong.size:
        channel = int(wrong[0])
        raise CodecError(
            f"{what} {channel} totals {int(totals[channel])}, expected 2**{precision} = "
            f"{1 << precision}; the table was built for another precision or is corrupt"
        )


class TableCoder:
    """What every coder over one validated CDF table (C, L+1) shares: the table, its
    precision, and the shape they give. Subclasses build their lookup lists from it."""

    __slots__ = ("_cdf", "_precision")

    def __init__(self, cdf: npt.ArrayLike, precision: int) -> None:
        self._precision = check_precision(precision)
        table = validate_cdf(cdf, self._precision)
        table.setflags(write=False)
        self._cdf = table

    @classmethod
    def from_freqs(cls, freqs: npt.ArrayLike, precision: int) -> Self:
        """Coder for a frequency table (C, L), e.g. ``EntropySpec.freqs`` from a manifest."""
        return cls(cdf_from_freqs(validate_freqs(freqs, precision)), precision)

    @property
    def cdf(self) -> npt.NDArray[np.int64]:
        """The validated table, (C, L+1) int64, read-only."""
        return self._cdf

    @property
    def precision(self) -> int:
        return self._precision

    @property
    def channels(self) -> int:
        return int(self._cdf.shape[0])

    @property
    def levels(self) -> int:
        return int(self._cdf.shape[1]) - 1

    def checked_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``shape`` as a tuple of ints (..., C) for this table; CodecError saying where it comes from."""
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else ()
        if (
            not dims
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims)
            or dims[-1] != self.channels
        ):
            raise CodecError(
                f"shape {list(dims)} is not (..., {self.channels}) with non-negative ints; "
                "pass the representation shape from the bundle manifest"
            )
        return tuple(int(d) for d in dims)
