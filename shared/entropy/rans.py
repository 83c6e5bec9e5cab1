"""Bit-exact rANS coder for quantized symbols, in pure Python integers (numpy only for I/O).

Wire format of one payload::

    [state: 4 bytes, little endian][renormalization bytes, in the order the decoder reads]

The state is 32 bits and lives in [2**23, 2**31); the coder renormalizes a byte at a
time; the bytes are those of ryg_rans' ``rans_byte.h`` with one state. The encoder walks the symbols backwards from the
initial state 2**23 and writes its final state in the header; the decoder walks them
forwards and must end on 2**23 having read every byte, which is how a truncated,
padded or foreign payload is caught. Symbols have shape (..., C); channel c is coded
with table row c. Everything inside the loops is a Python int, so the bytes are the
same on every platform, Python and numpy version.

Speed: the per-symbol loops are the cost (about 0.1 us/symbol each way), so each table
is turned once into Python lists -- a (freq, start, renorm bound, 2**precision - freq)
tuple per (channel, symbol) for encoding and, per channel, a slot -> symbol ``bytes``
(C * 2**precision bytes, built on the first decode) plus a symbol -> (freq, start) list. Use a
:class:`RansCoder` directly to skip even the cache lookup; ``encode`` / ``decode``
keep a small cache keyed by the table's content, so mutating an array is safe.
Interleaving several states in numpy was measured and is ~10x slower for 512 symbols
(numpy's per-call overhead dominates tiny arrays) and costs 4 bytes per extra state --
for one sample. ``lanes`` (codec ``rans-lanes``) interleaves eight states per sample with a
compact header and steps a whole batch's lanes together, which is where numpy wins.
"""

from __future__ import annotations

import functools
from itertools import cycle, islice

import numpy as np
import numpy.typing as npt

from shared.entropy.tables import TableCoder, check_precision, validate_freqs
from shared.errors import CodecError

__all__ = ["HEADER_BYTES", "STATE_LOW", "RansCoder", "coder_for", "decode", "encode", "ideal_bits"]

STATE_LOW = 1 << 23
"""Lower bound of the normalized state; also the encoder's initial state."""
_STATE_HIGH = STATE_LOW << 8  # exclusive upper bound, 2**31
HEADER_BYTES = 4
"""The final encoder state, little endian, opens every payload."""

_RETRY = "the payload is truncated or was coded with other tables; re-encode it with the bundle's tables"

_EncodeEntry = tuple[int, int, int, int]  # freq, start, renorm bound, 2**precision - freq
_DecodeTable = tuple[bytes, list[tuple[int, int]]]  # slot -> symbol; symbol -> (freq, start)


class RansCoder(TableCoder):
    """rANS coder bound to one validated CDF table (C, L+1) and precision.

    Build it once per bundle and reuse it: construction validates the table and
    precomputes the encode lists; the decode lookup lists are built on first decode.
    """

    __slots__ = ("_decode_luts", "_encode_entries", "_offsets")

    def __init__(self, cdf: npt.ArrayLike, precision: int) -> None:
        super().__init__(cdf, precision)
        table = self._cdf
        channels, levels = table.shape[0], table.shape[1] - 1
        freqs = np.diff(table, axis=1)
        total = 1 << self._precision
        shift = 31 - self._precision  # x < freq << shift keeps the next state below 2**31
        self._encode_entries: list[_EncodeEntry] = [
            (f, start, f << shift, total - f)
            for f, start in zip(freqs.ravel().tolist(), table[:, :-1].ravel().tolist())
        ]
        self._offsets = np.arange(channels, dtype=np.int64) * levels
        self._decode_luts: list[_DecodeTable] | None = None


    def encode(self, symbols: npt.ArrayLike) -> bytes:
        """Symbols (..., C), integers in [0, L) -> payload bytes."""
        keys = self._keys(symbols)
        entries = self._encode_entries
        out = bytearray()
        put = out.append
        state = STATE_LOW
        # rANS is last-in first-out: encode backwards so the decoder reads forwards.
        for k in reversed(keys):
            freq, start, bound, complement = entries[k]
            while state >= bound:
                put(state & 0xFF)
                state >>= 8
            # state // freq * 2**precision + state % freq + start, with one division.
            state += start + (state // freq) * complement
        out.reverse()
        return state.to_bytes(HEADER_BYTES, "little") + out

    def decode(
        self, payload: bytes | bytearray | memoryview, shape: tuple[int, ...]
    ) -> npt.NDArray[np.uint8]:
        """Payload bytes -> symbols of ``shape`` (..., C), uint8; CodecError if they do not decode.

        ``shape`` must come from the bundle (it is not in the payload); the work is
        linear in its size.
        """
        count = self._check_shape(shape)
        buf = bytes(payload)
        if len(buf) < HEADER_BYTES:
            raise CodecError(
                f"payload is {len(buf)} bytes, shorter than the {HEADER_BYTES}-byte rANS header; {_RETRY}"
            )
        state = int.from_bytes(buf[:HEADER_BYTES], "little")
        if not STATE_LOW <= state < _STATE_HIGH:
            raise CodecError(
                f"payload header holds state {state:#x}, outside [2**23, 2**31); "
                f"it is not an rANS payload or it is corrupt; {_RETRY}"
            )
        rows = islice(cycle(self._luts()), count)  # channel c of every row uses table c
        precision = self._precision
        mask = (1 << precision) - 1
        out = bytearray()
        put = out.append
        pos = HEADER_BYTES
        try:
            for slot_symbols, symbol_entries in rows:
                slot = state & mask
                symbol = slot_symbols[slot]
                freq, start = symbol_entries[symbol]
                state = freq * (state >> precision) + slot - start
                while state < STATE_LOW:
                    state = (state << 8) | buf[pos]
                    pos += 1
                put(symbol)
        except IndexError:
            raise CodecError(
                f"payload ran out of bytes after decoding {len(out)} of {count} symbols "
                f"({len(buf)} bytes); {_RETRY}"
            ) from None
        if pos != len(buf):
            raise CodecError(
                f"decoding {count} symbols used {pos} of the payload's {len(buf)} bytes; "
                f"the payload has extra bytes or the shape {list(shape)} is wrong; {_RETRY}"
            )
        if state != STATE_LOW:
            raise CodecError(
                f"payload decoded to a final state {state:#x} instead of {STATE_LOW:#x}; {_RETRY}"
            )
        return np.frombuffer(out, dtype=np.uint8).reshape(shape)

    def _keys(self, symbols: npt.ArrayLike) -> list[int]:
        """Flat indices channel * L + symbol into the encode entries, after range checks."""
        array = np.asarray(symbols)
        if array.dtype.kind not in "iu":
            raise CodecError(
                f"symbols must be integers, got dtype {array.dtype}; quantize them to uint8 first"
            )
        if array.ndim == 0 or array.shape[-1] != self.channels:
            raise CodecError(
                f"symbols of shape {list(array.shape)} do not end in the table's {self.channels} "
                "channels; pass shape (..., C) with the channel last"
            )
        if array.size == 0:
            return []
        levels = self.levels
        if int(array.min()) < 0 or int(array.max()) >= levels:
            where = np.argwhere((array < 0) | (array >= levels))[0]
            index = tuple(int(i) for i in where)
            raise CodecError(
                f"symbol {int(array[index])} at index {index} is outside the table's "
                f"{levels} levels; symbols must be in [0, {levels}): quantize with the "
                "bundle's bits or use tables built for them"
            )
        keys = array.reshape(-1, self.channels).astype(np.int64) + self._offsets
        result: list[int] = keys.ravel().tolist()
        return result

    def _check_shape(self, shape: tuple[int, ...]) -> int:
        return int(np.prod(self.checked_shape(shape), dtype=np.int64))

    def _luts(self) -> list[_DecodeTable]:
        """Per channel: slot -> symbol as bytes (1 byte a slot), and symbol -> (freq, start).

        As fast as a list of tuples per slot, at an eighth of its memory.
        """
        luts = self._decode_luts
        if luts is None:
            luts = []
            levels = np.arange(self.levels, dtype=np.uint8)
            for row, freqs in zip(self._cdf.tolist(), np.diff(self._cdf, axis=1)):
                slot_symbols = np.repeat(levels, freqs).tobytes()
                symbol_entries = [(row[s + 1] - row[s], row[s]) for s in range(self.levels)]
                luts.append((slot_symbols, symbol_entries))
            self._decode_luts = luts  # a racing thread builds an identical list; harmless
        return luts


@functools.lru_cache(maxsize=16)
def _cached_coder(precision: int, shape: tuple[int, ...], dtype: str, raw: bytes) -> RansCoder:
    return RansCoder(np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape), precision)


def coder_for(cdf: npt.ArrayLike, precision: int) -> RansCoder:
    """The :class:`RansCoder` for a table, from a small cache keyed by the table's content."""
    try:
        table = np.ascontiguousarray(cdf)
    except (TypeError, ValueError):
        return RansCoder(cdf, precision)  # raises CodecError saying what is wrong
    if table.dtype.kind not in "iu":
        return RansCoder(table, precision)  # likewise
    return _cached_coder(check_precision(precision), table.shape, table.dtype.str, table.tobytes())


def encode(symbols: npt.ArrayLike, cdf: npt.ArrayLike, precision: int) -> bytes:
    """Symbols (..., C) in [0, L) -> rANS payload, channel c coded with ``cdf[c]``."""
    return coder_for(cdf, precision).encode(symbols)


def decode(
    payload: bytes | bytearray | memoryview,
    cdf: npt.ArrayLike,
    precision: int,
    shape: tuple[int, ...],
) -> npt.NDArray[np.uint8]:
    """rANS payload -> uint8 symbols of ``shape``; CodecError if it does not decode exactly."""
    return coder_for(cdf, precision).decode(payload, shape)


def ideal_bits(symbols: npt.ArrayLike, freqs: npt.ArrayLike, precision: int) -> float:
    """Sum of -log2(freq / 2**precision) over the symbols: the size an ideal coder reaches."""
    precision = check_precision(precision)
    table = validate_freqs(freqs, precision)
    channels, levels = table.shape
    array = np.asarray(symbols)
    if array.dtype.kind not in "iu" or array.ndim == 0 or array.shape[-1] != channels:
        raise CodecError(
            f"symbols must be integers of shape (..., {channels}) to match the table, "
            f"got {array.dtype} {list(array.shape)}"
        )
    flat = array.reshape(-1, channels).astype(np.int64)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= levels):
        raise CodecError(
            f"symbols must be in [0, {levels}) for this table, got {int(flat.min())}..{int(flat.max())}; "
            "pass the table built for the symbols' bit depth"
        )
    picked = table[np.arange(channels), flat]  # (n, C)
    return float(flat.size * precision - np.log2(picked.astype(np.float64)).sum())
