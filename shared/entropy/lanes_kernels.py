"""The four inner loops of the ``rans-lanes`` coder: pure Python and numpy, encode and decode.

Every kernel works on W lanes of 32-bit rANS states in ``[LOW, 2**32)`` that step in
lock-step: at step t the first ``active[t]`` lanes code one symbol each, with the table of
channel ``t % C``, and a lane whose state falls below ``LOW`` after decoding reads the next
16-bit word of the one shared stream (lanes in ascending order within a step). The
encoder runs the steps backwards, so its words come out in reverse and are turned round.
Both languages give the same states and words: the tests hold them to it.

The pure-Python kernels cost about 0.1 us a symbol and win for a few lanes (one sample);
the numpy ones cost about a dozen numpy calls a *step* whatever the width, and win from
about three samples of eight lanes up, when the batch makes the vectors wide.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle, islice

import numpy as np
import numpy.typing as npt

from shared.errors import CodecError

__all__ = ["LOW", "decode_numpy", "decode_python", "encode8", "encode_numpy", "encode_python"]

LOW = 1 << 16
"""Lower bound of a normalized state; renormalization shifts in one 16-bit word."""
_WORD = 0xFFFF

U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]
EncodeEntry = tuple[int, int, int, int]  # freq, start, emit bound, 2**precision - freq
DecodeTable = tuple[bytes, list[tuple[int, int]]]  # slot -> symbol; symbol -> (freq, start)


def _ran_out(done: int, total: int) -> CodecError:
    return CodecError(
        f"payload ran out of renormalization words at step {done} of {total}; it is truncated "
        "or was coded with other tables; re-encode it with the bundle's tables"
    )


Put = Callable[[int], None]


# --- pure Python ------------------------------------------------------------------


def encode_python(
    grid: bytes, states: list[int], active: tuple[int, ...], entries: list[list[EncodeEntry]]
) -> list[int]:
    """Encode one batch in place: ``grid`` holds the (T, W) symbols of lane l at step t
    *reversed* (last step first, lanes descending), ``entries[c][s]`` symbol s's entry in
    channel c; ``states`` go in initial and come out final. Returns the words in the order
    the decoder reads them."""
    out: list[int] = []
    put = out.append
    channels = len(entries)
    width = len(states)
    steps = len(active)
    full = active.count(width)  # leading steps with every lane coding (active only shrinks)
    i = 0
    for t in range(steps - 1, full - 1, -1):  # the tail, where some lanes are done
        table = entries[t % channels]
        i += width - active[t]
        for lane in range(active[t] - 1, -1, -1):
            freq, start, bound, complement = table[grid[i]]
            i += 1
            x = states[lane]
            if x >= bound:
                put(x & _WORD)
                x >>= 16
            states[lane] = x + start + (x // freq) * complement
    for t in range(full - 1, -1, -1):
        table = entries[t % channels]
        for lane in range(width - 1, -1, -1):
            freq, start, bound, complement = table[grid[i]]
            i += 1
            x = states[lane]
            if x >= bound:
                put(x & _WORD)
                x >>= 16
            states[lane] = x + start + (x // freq) * complement
    out.reverse()
    return out


def encode8(
    grid: bytes, raw: int, entries: list[list[EncodeEntry]], digits: list[list[int]], levels: int
) -> tuple[list[int], list[int]]:
    """``encode_python`` for one sample of eight equal lanes (the device's case), unrolled, with
    the raw digits folded in: lanes 1-7 hold their last ``raw`` symbols as digits (Horner, last
    first; ``digits[c][s]``) while lane 0 codes them. ``grid`` is reversed as there.
    Returns (final states, words in the order the decoder reads them)."""
    out: list[int] = []
    put = out.append
    channels = len(entries)
    steps = len(grid) // 8
    x0, x1, x2, x3, x4, x5, x6, x7 = LOW, 0, 0, 0, 0, 0, 0, 0
    i = 0
    for t in range(steps - 1, steps - 1 - raw, -1):
        f, s, b, c = entries[t % channels][grid[i + 7]]
        if x0 >= b:
            put(x0 & _WORD)
            x0 >>= 16
        x0 += s + (x0 // f) * c
        d = digits[t % channels]
        x7 = x7 * levels + d[grid[i]]
        x6 = x6 * levels + d[grid[i + 1]]
        x5 = x5 * levels + d[grid[i + 2]]
        x4 = x4 * levels + d[grid[i + 3]]
        x3 = x3 * levels + d[grid[i + 4]]
        x2 = x2 * levels + d[grid[i + 5]]
        x1 = x1 * levels + d[grid[i + 6]]
        i += 8
    x1, x2, x3, x4, x5, x6, x7 = x1 + LOW, x2 + LOW, x3 + LOW, x4 + LOW, x5 + LOW, x6 + LOW, x7 + LOW
    full = steps - raw
    tables = cycle([entries[(full - 1 - j) % channels] for j in range(channels)])
    chunks = iter(grid[i:])
    for e, (k7, k6, k5, k4, k3, k2, k1, k0) in zip(tables, zip(*[chunks] * 8)):
        f, s, b, c = e[k7]
        if x7 >= b:
            put(x7 & _WORD)
            x7 >>= 16
        x7 += s + (x7 // f) * c
        f, s, b, c = e[k6]
        if x6 >= b:
            put(x6 & _WORD)
            x6 >>= 16
        x6 += s + (x6 // f) * c
        f, s, b, c = e[k5]
        if x5 >= b:
            put(x5 & _WORD)
            x5 >>= 16
        x5 += s + (x5 // f) * c
        f, s, b, c = e[k4]
        if x4 >= b:
            put(x4 & _WORD)
            x4 >>= 16
        x4 += s + (x4 // f) * c
        f, s, b, c = e[k3]
        if x3 >= b:
            put(x3 & _WORD)
            x3 >>= 16
        x3 += s + (x3 // f) * c
        f, s, b, c = e[k2]
        if x2 >= b:
            put(x2 & _WORD)
            x2 >>= 16
        x2 += s + (x2 // f) * c
        f, s, b, c = e[k1]
        if x1 >= b:
            put(x1 & _WORD)
            x1 >>= 16
        x1 += s + (x1 // f) * c
        f, s, b, c = e[k0]
        if x0 >= b:
            put(x0 & _WORD)
            x0 >>= 16
        x0 += s + (x0 // f) * c
    out.reverse()
    return [x0, x1, x2, x3, x4, x5, x6, x7], out


def decode_python(
    states: list[int], words: list[int], active: tuple[int, ...], luts: list[DecodeTable], precision: int
) -> bytearray:
    """Decode in place (``states`` come out final); the symbols, step by step, of the active
    lanes only. Raises CodecError when the words run out or are left over."""
    out = bytearray()
    put = out.append
    mask = (1 << precision) - 1
    channels = len(luts)
    steps = len(active)
    width = len(states)
    full = active.count(width)
    pos = 0
    try:
        if width == 8 and full:
            pos = _decode8(states, words, full, luts, precision, put)
        else:
            full = 0
        for t in range(full, steps):
            slot_symbols, symbol_entries = luts[t % channels]
            for lane in range(active[t]):
                x = states[lane]
                slot = x & mask
                symbol = slot_symbols[slot]
                freq, start = symbol_entries[symbol]
                x = freq * (x >> precision) + slot - start
                if x < LOW:
                    x = (x << 16) | words[pos]
                    pos += 1
                states[lane] = x
                put(symbol)
    except IndexError:
        raise CodecError(
            f"payload ran out of its {len(words)} renormalization words before the last of its "
            f"{steps} steps; it is truncated or was coded with other tables; re-encode it with "
            "the bundle's tables"
        ) from None
    if pos != len(words):
        raise _left_over(pos, len(words))
    return out


def _left_over(used: int, total: int) -> CodecError:
    return CodecError(
        f"decoding used {used} of the payload's {total} renormalization words; the payload "
        "has extra bytes or the shape is wrong; re-encode it with the bundle's tables"
    )


def _decode8(
    states: list[int], words: list[int], full: int, luts: list[DecodeTable], p: int, put: Put
) -> int:
    """The first ``full`` steps of ``decode_python`` for exactly eight lanes, unrolled."""
    x0, x1, x2, x3, x4, x5, x6, x7 = states
    mask = (1 << p) - 1
    pos = 0
    for ss, se in islice(cycle(luts), full):
        slot = x0 & mask
        y = ss[slot]
        f, s = se[y]
        x0 = f * (x0 >> p) + slot - s
        if x0 < LOW:
            x0 = (x0 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x1 & mask
        y = ss[slot]
        f, s = se[y]
        x1 = f * (x1 >> p) + slot - s
        if x1 < LOW:
            x1 = (x1 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x2 & mask
        y = ss[slot]
        f, s = se[y]
        x2 = f * (x2 >> p) + slot - s
        if x2 < LOW:
            x2 = (x2 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x3 & mask
        y = ss[slot]
        f, s = se[y]
        x3 = f * (x3 >> p) + slot - s
        if x3 < LOW:
            x3 = (x3 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x4 & mask
        y = ss[slot]
        f, s = se[y]
        x4 = f * (x4 >> p) + slot - s
        if x4 < LOW:
            x4 = (x4 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x5 & mask
        y = ss[slot]
        f, s = se[y]
        x5 = f * (x5 >> p) + slot - s
        if x5 < LOW:
            x5 = (x5 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x6 & mask
        y = ss[slot]
        f, s = se[y]
        x6 = f * (x6 >> p) + slot - s
        if x6 < LOW:
            x6 = (x6 << 16) | words[pos]
            pos += 1
        put(y)
        slot = x7 & mask
        y = ss[slot]
        f, s = se[y]
        x7 = f * (x7 >> p) + slot - s
        if x7 < LOW:
            x7 = (x7 << 16) | words[pos]
            pos += 1
        put(y)
    states[:] = [x0, x1, x2, x3, x4, x5, x6, x7]
    return pos


# --- numpy ------------------------------------------------------------------------


def encode_numpy(
    keys: npt.NDArray[np.intp], states: U32, active: tuple[int, ...], freqs: U32, starts: U32, precision: int
) -> npt.NDArray[np.uint16]:
    """``encode_python`` over wide lanes: ``keys`` (T, W) index the flat (C * L,) ``freqs`` and
    ``starts`` by channel * L + symbol. ``states`` (W,) are updated in place; returns the
    words in the order the decoder reads them."""
    steps, width = keys.shape
    f_all = freqs[keys]
    s_all = starts[keys]
    bound_all = f_all << np.uint32(32 - precision)
    comp_all = np.uint32(1 << precision) - f_all
    need = np.empty(width, dtype=bool)
    quotient = np.empty(width, dtype=np.uint32)
    chunks: list[npt.NDArray[np.uint32]] = []
    shift = np.uint32(16)
    word = np.uint32(_WORD)
    for t in range(steps - 1, -1, -1):
        a = active[t]
        x = states[:a]
        flag = need[:a]
        np.greater_equal(x, bound_all[t, :a], out=flag)
        emit = flag.nonzero()[0]
        if emit.size:
            chunks.append(x[emit] & word)
            np.right_shift(x, shift, out=x, where=flag)
        q = quotient[:a]
        np.floor_divide(x, f_all[t, :a], out=q)
        np.multiply(q, comp_all[t, :a], out=q)
        np.add(q, s_all[t, :a], out=q)
        np.add(x, q, out=x)
    chunks.reverse()
    if not chunks:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate(chunks).astype(np.uint16)


def decode_numpy(states: U32, words: U32, active: tuple[int, ...], packed: U32, precision: int) -> U32:
    """``decode_python`` over wide lanes. ``packed`` (C, 2**precision) holds per slot the uint16
    pair (freq, slot - start) in one uint32; ``states`` (W,) are updated in place. Returns the
    slot (T, W) each lane decoded at each step, 0 where a lane was done."""
    steps = len(active)
    width = states.shape[0]
    rows = list(packed)
    channels = len(rows)
    slots = np.empty((steps, width), dtype=np.uint32)
    need = np.empty(width, dtype=bool)
    entry = np.empty(width, dtype=np.uint32)
    pair = entry.view(np.uint16)  # native order either way: the table was built through the same view
    freq, bias = pair[0::2], pair[1::2]
    mask = np.uint32((1 << precision) - 1)
    prec = np.uint32(precision)
    low = np.uint32(LOW)
    shift = np.uint32(16)
    band, rshift, multiply, add, less = np.bitwise_and, np.right_shift, np.multiply, np.add, np.less
    x, e, f, b, flag = states, entry, freq, bias, need
    pos = 0
    total = words.shape[0]
    for t, slot in enumerate(slots):
        a = active[t]
        if a != width:
            x, e, f, b, flag = states[:a], entry[:a], freq[:a], bias[:a], need[:a]
            slot[a:] = 0
            slot = slot[:a]
        band(x, mask, out=slot)
        rows[t % channels].take(slot, out=e, mode="clip")  # 'clip' is not buffered; slots are in range
        rshift(x, prec, out=x)
        multiply(x, f, out=x)
        add(x, b, out=x)
        less(x, low, out=flag)
        read = flag.nonzero()[0]
        count = read.size
        if count:
            if pos + count > total:
                raise _ran_out(t, steps)
            fresh = x[read]
            fresh <<= shift
            fresh |= words[pos : pos + count]
            x[read] = fresh
            pos += count
    if pos != total:
        raise _left_over(pos, total)
    return slots
