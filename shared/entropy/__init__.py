"""Entropy coding of quantized symbols: integer tables and two bit-exact rANS coders.

``tables`` turns a float pmf into integer frequencies / CDFs and checks tables read
from a manifest. ``rans`` is the original single-state coder (codec ``rans``, still read);
``lanes`` the interleaved one whose batches decode in lock-step in numpy (codec
``rans-lanes``, the default for new bundles). Both code symbols (..., C) with one table
row per channel, need only numpy, and give the same bytes on every platform.

    freqs = quantize_pmf(pmf, precision=15)        # (C, L) ints, rows sum to 2**15
    cdf = cdf_from_freqs(freqs)                    # (C, L+1)
    payload = encode(symbols, cdf, 15)             # rans: symbols (..., C) in [0, L)
    symbols = decode(payload, cdf, 15, shape)      # uint8, or CodecError
    coder = LanesCoder(cdf, 15)                    # rans-lanes: coder.encode / coder.decode
"""

from shared.entropy.lanes import LanesCoder
from shared.entropy.rans import HEADER_BYTES, STATE_LOW, RansCoder, coder_for, decode, encode, ideal_bits
from shared.entropy.tables import (
    MAX_LEVELS,
    MAX_PRECISION,
    MIN_LEVELS,
    MIN_PRECISION,
    cdf_from_freqs,
    check_precision,
    quantize_pmf,
    validate_cdf,
    validate_freqs,
)

__all__ = [
    "HEADER_BYTES",
    "MAX_LEVELS",
    "MAX_PRECISION",
    "MIN_LEVELS",
    "MIN_PRECISION",
    "STATE_LOW",
    "LanesCoder",
    "RansCoder",
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
