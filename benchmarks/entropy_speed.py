"""Speed and size of the rANS coder on the typical message: 64 tokens x 8 channels.

Run from the repo root (CPU only, a few seconds):

    python -m benchmarks.entropy_speed

For each bit depth it times encode and decode over 64 samples drawn from the table's
own distribution, best of several repeats, both through a prepared ``RansCoder`` and
through the ``encode`` / ``decode`` functions (which add a content-keyed cache
lookup), and prints µs per sample and coded size against the ideal size.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from shared.entropy import RansCoder, cdf_from_freqs, decode, encode, ideal_bits, quantize_pmf

ROWS, CHANNELS, SAMPLES, REPEATS = 64, 8, 64, 15


def laplace_pmf(rng: np.random.Generator, levels: int) -> npt.NDArray[np.float64]:
    """Per-channel discretized Laplace pmfs with varied centre and spread, like trained priors."""
    x = np.arange(levels)[None, :] - rng.uniform(0.3, 0.7, size=(CHANNELS, 1)) * levels
    return np.exp(-np.abs(x) / rng.uniform(0.03, 0.15, size=(CHANNELS, 1)) / levels)


def draw(rng: np.random.Generator, pmf: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    probs = pmf / pmf.sum(axis=1, keepdims=True)
    cols = [rng.choice(pmf.shape[1], size=ROWS, p=probs[c]) for c in range(CHANNELS)]
    return np.stack(cols, axis=1).astype(np.uint8)


def best_us_per_sample(run: Callable[[], object], samples: int) -> float:
    timings = timeit.repeat(run, number=1, repeat=REPEATS)
    return min(timings) / samples * 1e6


def bench(bits: int, precision: int) -> str:
    """One table row: timings and sizes for one bit depth and precision."""
    rng = np.random.default_rng(bits * 100 + precision)
    pmf = laplace_pmf(rng, 1 << bits)
    freqs = quantize_pmf(pmf, precision)
    cdf = cdf_from_freqs(freqs)
    batch = [draw(rng, pmf) for _ in range(SAMPLES)]
    shape = (ROWS, CHANNELS)
    coder = RansCoder(cdf, precision)
    payloads = [coder.encode(s) for s in batch]
    start = time.perf_counter()
    coder.decode(payloads[0], shape)  # the first decode builds the lookup lists
    build_ms = (time.perf_counter() - start) * 1e3
    for symbols, payload in zip(batch, payloads):
        assert np.array_equal(coder.decode(payload, shape), symbols)

    def via_functions() -> None:
        for symbols in batch:
            decode(encode(symbols, cdf, precision), cdf, precision, shape)

    enc = best_us_per_sample(lambda: [coder.encode(s) for s in batch], SAMPLES)
    dec = best_us_per_sample(lambda: [coder.decode(p, shape) for p in payloads], SAMPLES)
    functions = best_us_per_sample(via_functions, SAMPLES)
    size = sum(len(p) for p in payloads) / SAMPLES
    ideal = sum(ideal_bits(s, freqs, precision) for s in batch) / SAMPLES / 8
    return (
        f"{bits:>4} {precision:>4} | {enc:6.1f} {dec:6.1f} {enc + dec:6.1f} | {functions:9.1f} | "
        f"{size:6.1f} {ideal:6.1f} {size / ideal:6.3f} | {build_ms:6.1f}"
    )


def main() -> None:
    print(f"message ({ROWS}, {CHANNELS}) = {ROWS * CHANNELS} symbols; best of {REPEATS} x {SAMPLES} samples")
    print("                 us/sample, RansCoder | us/sample |  bytes/sample         | first")
    print("bits prec |    enc    dec  total |  via funcs |  coded  ideal  ratio | decode ms")
    for bits, precision in [(2, 12), (4, 15), (8, 15), (8, 16)]:
        print(bench(bits, precision))


if __name__ == "__main__":
    main()
