"""Entropy coding of quantized symbols: integer tables and a bit-exact rANS coder.

``tables`` turns a float pmf into integer frequencies / CDFs and checks tables read
from a manifest; ``rans`` codes symbols (..., C) with one table row per channel.
Only numpy is needed, and the bytes are identical on every platform.

    freqs = quantize_pmf(pmf, precision=15)        # (C, L) ints, rows sum to 2**15
    cdf = cdf_from_freqs(freqs)                    # (C, L+1)
    payload = encode(symbols, cdf, 15)             # symbols (..., C) in [0, L)
    symbols = decode(payload, cdf, 15, shape)      # uint8, or CodecError
"""

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
