"""``rans-lanes``: bit-exact interleaved rANS whose batches decode in lock-step in numpy.

Wire format of one payload for symbols (..., N, C) -- B samples of N tokens x C channels::

    [header: W 5-bit lengths, then W state values, MSB first, zero-padded to a byte]
    [words:  16-bit little-endian renormalization words, in the order the decoder reads them]

Lanes (``lanes_layout``). Each sample is cut into K lanes: lane k holds tokens k, k+K,
k+2K, ... and visits a token's channels in order, so at step t every lane codes channel
t % C with that channel's table. Lane k of sample b is lane l = k*B + b of W = K*B. K is
the most of 8, 4, 2, 1 that leaves each lane 64 symbols and 96 bits of expected
information under the table (integer arithmetic, so both ends agree): 8 for the bundles
we ship, fewer for tiny or near-deterministic samples, where a lane would cost more than
it carries.

States. A lane is a 32-bit rANS state in [2**16, 2**32) that renormalizes by one 16-bit
word, at most one read per step since the precision is at most 16. The encoder runs the
steps backwards from each lane's initial state and the decoder forwards; all lanes share
one stream of words, read in step order and, within a step, in lane order
(``lanes_kernels``).

Initial states. Lane 0 of every sample starts from 2**16 and must end there: with the word
count, that is the check which catches a truncated, padded, foreign or corrupt payload.
Lane k >= 1 starts from 2**16 + r, where r holds the lane's last g symbols (decoding order)
as base-L digits, each relative to its channel's most frequent symbol; g is the most with
L**g <= 2**16. Those symbols ride in bits a fixed start state would waste.

Header (``lanes_header``). Each lane's final encoder state X is written as v = X - 2**16
with a 5-bit length: n = bit length of v for v < 2**30 (then its n - 1 bits below the
leading one), n = 31 above (then all 32 bits).

Cost: about 8-11 bytes a sample over the ideal size (the old ``rans``: 3.5), inside 1.03 x
ideal + 16 bytes. Speed: one sample takes the pure-Python kernels (an unrolled eight-lane
loop), as fast as ``rans`` either way; from three samples on, the numpy kernels run all
B*K lanes in lock-step at about a dozen numpy calls a step whatever B is, so the time per
sample falls with the batch: decode is ~5-7x faster than ``rans`` per sample at B = 64 and
~10-20x at B = 256 (64 x 8 symbols, a shared 2-core box). K = 8 fixes 64 steps for 512
symbols; more lanes would be faster but cost more than the size budget allows. Every parse
is bounded, and every inconsistency is a CodecError.
"""

from __future__ import annotations

import sys
from array import array

import numpy as np
import numpy.typing as npt

from shared.entropy import lanes_header as header
from shared.entropy import lanes_kernels as kernels
from shared.entropy.lanes_kernels import LOW
from shared.entropy.lanes_layout import Layout, information, lanes_for, layout_for
from shared.entropy.tables import TableCoder
from shared.errors import CodecError

__all__ = ["LanesCoder"]

VECTOR_LANES = 24
"""From this many lanes (three samples) on, the numpy kernels beat the Python ones."""
_RETRY = "re-encode it with the bundle's tables"


class LanesCoder(TableCoder):
    """``rans-lanes`` coder bound to one validated CDF table (C, L+1) and precision.

    Build it once per bundle and reuse it; ``encode`` / ``decode`` pick the pure-Python
    kernels for a sample or two and the numpy ones for wider batches.
    """

    def __init__(self, cdf: npt.ArrayLike, precision: int) -> None:
        super().__init__(cdf, precision)
        table = self._cdf
        total = 1 << self._precision
        freqs = np.diff(table, axis=1)
        starts = table[:, :-1]
        shift = 32 - self._precision  # x < freq << shift keeps the next state below 2**32
        self._entries: list[list[kernels.EncodeEntry]] = [
            [(f, s, f << shift, total - f) for f, s in zip(frow, srow)]
            for frow, srow in zip(freqs.tolist(), starts.tolist())
        ]
        self._freqs32 = freqs.astype(np.uint32).ravel()
        self._starts32 = starts.astype(np.uint32).ravel()
        self._mode = np.argmax(freqs, axis=1).astype(np.int64)  # first most frequent symbol
        self._mode_list: list[int] = self._mode.tolist()
        self._raw_tables: dict[int, npt.NDArray[np.int64]] = {}
        self._layouts: dict[tuple[int, ...], Layout] = {}
        self._information = information(freqs, self._precision)
        levels = table.shape[1] - 1
        self._unraw = [[(d + m) % levels for d in range(levels)] for m in self._mode_list]
        """Per channel: raw digit -> symbol."""
        self._digits = [[(s - m) % levels for s in range(levels)] for m in self._mode_list]
        """Per channel: symbol -> raw digit."""
        self._luts: list[kernels.DecodeTable] | None = None
        self._packed: npt.NDArray[np.uint32] | None = None
        self._slot_symbols: npt.NDArray[np.uint8] | None = None


    def encode(self, symbols: npt.ArrayLike, vectorized: bool | None = None) -> bytes:
        """Symbols (..., N, C) in [0, L) -> payload. ``vectorized`` forces a kernel (tests)."""
        return self.encode_checked(self._check_symbols(symbols), vectorized)

    def encode_checked(self, array: npt.NDArray[np.integer], vectorized: bool | None = None) -> bytes:
        """``encode`` for symbols already known to be integers in [0, L) of shape (..., C)."""
        lay = self._layout(array.shape)
        if lay.width == 0:
            return b""
        flat = array.reshape(-1)
        if lay.one_sample and vectorized is not True:  # the device's case: one kernel call, no numpy
            grid = flat.take(lay.source_reversed).astype(np.uint8, copy=False).tobytes()
            finals, word_list = kernels.encode8(grid, lay.raws, self._entries, self._digits, self.levels)
            return header.pack_python(finals) + _words_bytes(word_list)
        if flat.size:
            raw = self._raw_table(lay.raw_source.shape[1])
            states = raw.take(lay.raw_key + flat.take(lay.raw_source)).sum(axis=1)  # LOW + the raw digits
        else:
            states = np.full(lay.width, LOW, dtype=np.int64)  # no symbols: every lane stays at LOW
        if vectorized if vectorized is not None else lay.width >= VECTOR_LANES:
            finals = states.astype(np.uint32)
            channel = (np.arange(len(lay.active)) % self.channels) * self.levels
            keys = (lay.to_grid(array) + channel[:, None]).astype(np.intp)
            words = kernels.encode_numpy(keys, finals, lay.active, self._freqs32, self._starts32, self._precision)
            return header.pack_numpy(finals) + words.astype("<u2").tobytes()
        state_list: list[int] = states.tolist()
        grid = flat[lay.source_reversed].astype(np.uint8, copy=False).tobytes()  # symbols < L <= 256
        word_list = kernels.encode_python(grid, state_list, lay.active, self._entries)
        return header.pack_python(state_list) + _words_bytes(word_list)

    def decode(
        self, payload: bytes | bytearray | memoryview, shape: tuple[int, ...], vectorized: bool | None = None
    ) -> npt.NDArray[np.uint8]:
        """Payload -> uint8 symbols of ``shape`` (from the bundle); CodecError if it does not decode
        exactly. ``vectorized`` forces a kernel (tests)."""
        dims = self._check_shape(shape)
        lay = self._layout(dims)
        buf = bytes(payload)
        if lay.width == 0:
            if buf:
                raise CodecError(f"payload for an empty batch must be empty, got {len(buf)} bytes; {_RETRY}")
            return np.zeros(dims, dtype=np.uint8)
        wide = vectorized if vectorized is not None else lay.width >= VECTOR_LANES
        out = np.empty(lay.size + 1, dtype=np.uint8)  # the spare last slot takes lanes that are done
        if wide:
            values, used = header.unpack_numpy(buf, lay.width)
            self._check_words(buf, used)
            words = np.frombuffer(buf, dtype="<u2", offset=used)
            states = (values + LOW).astype(np.uint32)
            slots = kernels.decode_numpy(states, words.astype(np.uint32), lay.active, self._packed_table(),
                                         self._precision)
            channel = (np.arange(len(lay.active), dtype=np.uint32) % self.channels)[:, None] << np.uint32(
                self._precision
            )
            np.bitwise_or(slots, channel, out=slots)
            symbols = self._slot_table().take(slots, mode="clip")  # take beats fancy indexing
            lay.from_grid(symbols, out[: lay.size].reshape(lay.samples, lay.tokens, lay.channels))
            self._fill_raw(states.astype(np.int64), out, lay)
        else:
            value_list, used = header.unpack_python(buf, lay.width)
            self._check_words(buf, used)
            state_list = [v + LOW for v in value_list]
            decoded = kernels.decode_python(state_list, np.frombuffer(buf, dtype="<u2", offset=used).tolist(),
                                            lay.active, self._decode_luts(), self._precision)
            self._raw_python(state_list, decoded, lay)
            out[lay.python_target] = np.frombuffer(decoded, dtype=np.uint8)
        return out[: lay.size].reshape(dims)

    @staticmethod
    def _check_words(buf: bytes, used: int) -> None:
        if (len(buf) - used) % 2:
            raise CodecError(
                f"payload has {len(buf) - used} bytes after its {used}-byte header, not a whole number "
                f"of 16-bit words; it is truncated or padded; {_RETRY}"
            )

    def _fill_raw(self, finals: npt.NDArray[np.int64], out: npt.NDArray[np.uint8], lay: Layout) -> None:
        """Lane 0 must be back at LOW; the others hold their raw symbols, written into ``out``."""
        rest = finals - LOW
        bad = np.flatnonzero(rest >= lay.raw_limit)
        if bad.size:
            raise _bad_final(int(bad[0]), int(finals[bad[0]]), lay)
        levels = self.levels
        digits = (rest[:, None] // np.maximum(lay.raw_weight, 1)) % levels
        used = lay.raw_weight > 0
        symbols = (digits + self._mode[lay.raw_channel]) % levels
        out[lay.raw_source[used]] = symbols[used]

    def _raw_python(self, finals: list[int], out: bytearray, lay: Layout) -> None:
        """``_fill_raw`` for the Python path: appends the raw symbols, lane by lane, to ``out``."""
        levels, unraw = self.levels, self._unraw
        put = out.append
        for lane, (final, channels, limit) in enumerate(zip(finals, lay.raw_channels, lay.raw_limits)):
            rest = final - LOW
            if rest >= limit:
                raise _bad_final(lane, final, lay)
            for channel in channels:
                rest, digit = divmod(rest, levels)
                put(unraw[channel][digit])

    # --- tables and shapes --------------------------------------------------------

    def lanes(self, shape: tuple[int, ...]) -> int:
        """Lanes per sample for symbols of ``shape`` (..., N, C) with this table."""
        return lanes_for(shape[-2] if len(shape) >= 2 else 1, self.channels, self._information)

    def _layout(self, shape: tuple[int, ...]) -> Layout:
        lay = self._layouts.get(shape)
        if lay is None:
            lay = layout_for(shape, self.levels, self.lanes(shape))
            if len(self._layouts) < 64:  # a bundle sees a handful of batch sizes
                self._layouts[shape] = lay
        return lay

    def _raw_table(self, digits: int) -> npt.NDArray[np.int64]:
        """((R + 2) * C * L,): at j*C*L + c*L + s, symbol s of channel c as raw digit j, that is
        ((s - mode[c]) mod L) * L**j, plus LOW for j = 0; then C*L entries LOW and C*L zeros
        for unused slots. Each lane's digit 0 (used or not) brings the LOW of its state."""
        table = self._raw_tables.get(digits)
        if table is None:
            levels = self.levels
            digit = (np.arange(levels)[None, :] - self._mode[:, None]) % levels  # (C, L)
            weights = levels ** np.arange(digits, dtype=np.int64)
            block = self.channels * levels
            values = weights[:, None, None] * digit[None]
            values[0] += LOW
            table = np.concatenate([values.ravel(), np.full(block, LOW, np.int64), np.zeros(block, np.int64)])
            self._raw_tables[digits] = table
        return table

    def _decode_luts(self) -> list[kernels.DecodeTable]:
        """Per channel: slot -> symbol as bytes, and symbol -> (freq, start), for Python."""
        luts = self._luts
        if luts is None:
            levels = np.arange(self.levels, dtype=np.uint8)
            luts = [
                (np.repeat(levels, f).tobytes(), list(zip(f.tolist(), s.tolist())))
                for f, s in zip(np.diff(self._cdf, axis=1), self._cdf[:, :-1])
            ]
            self._luts = luts  # a racing thread builds the same tables; harmless
        return luts

    def _slot_table(self) -> npt.NDArray[np.uint8]:
        """slot -> symbol, (C * 2**precision,) flat."""
        table = self._slot_symbols
        if table is None:
            levels = np.arange(self.levels, dtype=np.uint8)
            table = np.concatenate([np.repeat(levels, f) for f in np.diff(self._cdf, axis=1)])
            self._slot_symbols = table
        return table

    def _packed_table(self) -> npt.NDArray[np.uint32]:
        """Per channel and slot the uint16 pair (freq, slot - start), viewed as one uint32."""
        packed = self._packed
        if packed is None:
            keys = self._slot_table().reshape(self.channels, -1).astype(np.int64)
            keys += np.arange(self.channels)[:, None] * self.levels
            pairs = np.empty((*keys.shape, 2), dtype=np.uint16)
            pairs[..., 0] = self._freqs32[keys]
            pairs[..., 1] = np.arange(keys.shape[1]) - self._starts32[keys].astype(np.int64)
            packed = pairs.view(np.uint32)[..., 0]  # same memory, so the pair order is kept
            self._packed = packed
        return packed

    def _check_symbols(self, symbols: npt.ArrayLike) -> npt.NDArray[np.integer]:
        array = np.asarray(symbols)
        if array.dtype.kind not in "iu":
            raise CodecError(f"symbols must be integers, got dtype {array.dtype}; quantize them to uint8 first")
        if array.ndim == 0 or array.shape[-1] != self.channels:
            raise CodecError(
                f"symbols of shape {list(array.shape)} do not end in the table's {self.channels} "
                "channels; pass shape (..., C) with the channel last"
            )
        levels = self.levels
        if array.size and ((array.dtype.kind == "i" and int(array.min()) < 0) or int(array.max()) >= levels):
            index = tuple(int(i) for i in np.argwhere((array < 0) | (array >= levels))[0])
            raise CodecError(
                f"symbol {int(array[index])} at index {index} is outside the table's {levels} levels; "
                f"symbols must be in [0, {levels}): quantize with the bundle's bits or use tables built for them"
            )
        return array

    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if type(shape) is tuple and shape and all(type(d) is int and d >= 0 for d in shape) and (
            shape[-1] == self.channels
        ):
            return shape  # the common case, checked without building anything
        return self.checked_shape(shape)


def _bad_final(lane: int, state: int, lay: Layout) -> CodecError:
    k, b = divmod(lane, lay.samples)
    what = (
        f"sample {b} decoded to a final state {state:#x} instead of {LOW:#x}"
        if k == 0
        else f"lane {k} of sample {b} ended in state {state:#x}, past the raw symbols it holds"
    )
    return CodecError(f"{what}: the payload is corrupt or was coded with other tables; {_RETRY}")


def _words_bytes(words: list[int]) -> bytes:
    packed = array("H", words)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()
