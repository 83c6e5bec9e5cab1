"""The header of a ``rans-lanes`` payload: each lane's final encoder state, compactly.

For state X, v = X - 2**16 gets a 5-bit length n, all W lengths first, then the values,
MSB first, zero-padded to a whole byte:

    n = bit length of v, for v < 2**30    followed by the n - 1 bits below v's leading one
    n = 31, for v >= 2**30                followed by all 32 bits of v

Every state has exactly one header (the padding must be zero, a 32-bit value must need
31 bits or more, X must stay below 2**32), so a header that parses re-encodes to itself.
The pure-Python pair serves a lane or twenty, the numpy pair wide batches; both write
the same bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shared.entropy.lanes_kernels import LOW
from shared.errors import CodecError

__all__ = ["pack_numpy", "pack_python", "unpack_numpy", "unpack_python"]

_SPAN = (1 << 32) - LOW  # v = X - LOW is below this
_RETRY = "re-encode it with the bundle's tables"
_POWERS = np.left_shift(np.int64(1), np.arange(32, dtype=np.int64))


def pack_python(states: list[int]) -> bytes:
    lengths = values = size = 0
    for x in states:
        v = x - LOW
        n = v.bit_length()
        if n > 30:
            lengths, values, size = (lengths << 5) | 31, (values << 32) | v, size + 32
        elif n:
            lengths, values, size = (lengths << 5) | n, (values << (n - 1)) | (v ^ (1 << (n - 1))), size + n - 1
        else:
            lengths <<= 5
    size += 5 * len(states)
    pad = -size % 8
    return ((((lengths << (size - 5 * len(states))) | values)) << pad).to_bytes((size + pad) // 8, "big")


def _too_short(got: int, need: int, what: str) -> CodecError:
    return CodecError(f"payload is {got} bytes, too short for its {what} ({need} bytes); it is truncated; {_RETRY}")


def _impossible(lane: int) -> CodecError:
    return CodecError(
        f"payload header holds an impossible state for lane {lane}; it is not a rans-lanes "
        f"payload or it is corrupt; {_RETRY}"
    )


def _padding() -> CodecError:
    return CodecError(f"payload header has non-zero padding bits; it is corrupt; {_RETRY}")


def unpack_python(buf: bytes, width: int) -> tuple[list[int], int]:
    """(v for each lane, header bytes) from the payload's start; CodecError if malformed."""
    lead = (5 * width + 7) >> 3
    if len(buf) < lead:
        raise _too_short(len(buf), lead, "state lengths")
    first = int.from_bytes(buf[:lead], "big") >> ((lead << 3) - 5 * width)
    lengths = []
    size = 5 * width
    for shift in range(5 * (width - 1), -1, -5):
        n = (first >> shift) & 31
        lengths.append(n)
        size += 32 if n == 31 else n - 1 if n else 0
    used = (size + 7) >> 3
    if len(buf) < used:
        raise _too_short(len(buf), used, "header")
    acc = int.from_bytes(buf[:used], "big")
    if acc & ((1 << ((used << 3) - size)) - 1):
        raise _padding()
    shift = (used << 3) - 5 * width
    values: list[int] = []
    put = values.append
    for lane, n in enumerate(lengths):
        if n == 31:
            shift -= 32
            value = (acc >> shift) & 0xFFFFFFFF
            if value < 1 << 30 or value >= _SPAN:
                raise _impossible(lane)
            put(value)
        elif n:
            shift -= n - 1
            put(((acc >> shift) & ((1 << (n - 1)) - 1)) | (1 << (n - 1)))
        else:
            put(0)
    return values, used


def _value_bits(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    bits: npt.NDArray[np.int64] = np.where(lengths == 31, 32, np.maximum(lengths - 1, 0))
    return bits


def pack_numpy(states: npt.NDArray[np.uint32]) -> bytes:
    values = states.astype(np.int64) - LOW
    bitlen = np.searchsorted(_POWERS, values, side="right")
    lengths = np.where(bitlen <= 30, bitlen, 31)
    bits = _value_bits(lengths)
    leading = np.where((lengths >= 1) & (lengths <= 30), np.left_shift(1, np.maximum(lengths - 1, 0)), 0)
    length_bits = np.unpackbits((lengths.astype(np.uint8) << np.uint8(3))[:, None], axis=1)[:, :5]
    value_bits = np.unpackbits((values - leading).astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    keep = _COLUMNS >= (32 - bits)[:, None]  # the last ``bits`` of each lane's 32
    return np.packbits(np.concatenate([length_bits.ravel(), value_bits[keep]])).tobytes()


_COLUMNS = np.arange(32)[None, :]


def unpack_numpy(buf: bytes, width: int) -> tuple[npt.NDArray[np.int64], int]:
    lead = (5 * width + 7) >> 3
    if len(buf) < lead:
        raise _too_short(len(buf), lead, "state lengths")
    padded = np.zeros(len(buf) + 8, dtype=np.uint8)  # 8 spare zero bytes for the windows below
    padded[: len(buf)] = np.frombuffer(buf, dtype=np.uint8)
    at = 5 * np.arange(width)
    pairs = (padded[at >> 3].astype(np.int64) << 8) | padded[(at >> 3) + 1]
    lengths = (pairs >> (11 - (at & 7))) & 31
    bits = _value_bits(lengths)
    size = 5 * width + int(bits.sum())
    used = (size + 7) >> 3
    if len(buf) < used:
        raise _too_short(len(buf), used, "header")
    if padded[used - 1] & ((1 << ((used << 3) - size)) - 1):
        raise _padding()
    start = 5 * width + np.cumsum(bits) - bits
    windows = padded[(start >> 3)[:, None] + np.arange(8)].view(">u8").ravel()  # 64 bits from each start
    drop = np.minimum(64 - (start & 7) - bits, 63).astype(np.uint64)
    mask = (np.left_shift(np.uint64(1), bits.astype(np.uint64)) - np.uint64(1)).astype(np.uint64)
    mantissas = ((windows >> drop) & mask).astype(np.int64)
    leading = np.where((lengths >= 1) & (lengths <= 30), np.left_shift(1, np.maximum(lengths - 1, 0)), 0)
    values = mantissas | leading
    wrong = np.flatnonzero(((lengths == 31) & (values < 1 << 30)) | (values >= _SPAN))
    if wrong.size:
        raise _impossible(int(wrong[0]))
    return values, used
