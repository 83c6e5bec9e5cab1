"""`devtune bench entropy`: speed and size of the rANS coder on the typical message, 64 tokens x 8 channels.

CPU only, a few seconds:

    devtune bench entropy            # the table
    devtune bench entropy --json     # one JSON object; both write results/bench-entropy.json

For each bit depth it times encode and decode over 64 samples drawn from the table's
own distribution, best of several repeats, both through a prepared ``RansCoder`` and
through the ``encode`` / ``decode`` functions (which add a content-keyed cache
lookup), and prints µs per sample and coded size against the ideal size.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CoderRun", "add_arguments", "measure", "render_table", "report_json", "run"]

ROWS, CHANNELS, SAMPLES, REPEATS = 64, 8, 64, 15
SETTINGS = ((2, 12), (4, 15), (8, 15), (8, 16))  # (bits, precision) of each table row


@dataclass(frozen=True)
class CoderRun:
    """One bit depth and precision: per-sample timings (best of REPEATS) and sizes (means)."""

    bits: int
    precision: int
    encode_us: float  # through a prepared RansCoder
    decode_us: float
    via_functions_us: float  # encode + decode through the functions, cache lookup included
    coded_bytes: float
    ideal_bytes: float  # ideal_bits / 8 under the same table
    first_decode_ms: float  # the first decode builds the lookup lists

    @property
    def coded_over_ideal(self) -> float:
        return self.coded_bytes / self.ideal_bytes


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


def measure_one(bits: int, precision: int) -> CoderRun:
    """Timings and sizes for one bit depth and precision."""
    from shared.entropy import RansCoder, cdf_from_freqs, decode, encode, ideal_bits, quantize_pmf

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
        if not np.array_equal(coder.decode(payload, shape), symbols):
            raise RuntimeError(f"rANS did not round-trip a {bits}-bit sample; the coder is broken")

    def via_functions() -> None:
        for symbols in batch:
            decode(encode(symbols, cdf, precision), cdf, precision, shape)

    return CoderRun(
        bits=bits,
        precision=precision,
        encode_us=best_us_per_sample(lambda: [coder.encode(s) for s in batch], SAMPLES),
        decode_us=best_us_per_sample(lambda: [coder.decode(p, shape) for p in payloads], SAMPLES),
        via_functions_us=best_us_per_sample(via_functions, SAMPLES),
        coded_bytes=sum(len(p) for p in payloads) / SAMPLES,
        ideal_bytes=sum(ideal_bits(s, freqs, precision) for s in batch) / SAMPLES / 8,
        first_decode_ms=build_ms,
    )


def measure() -> list[CoderRun]:
    return [measure_one(bits, precision) for bits, precision in SETTINGS]


def report_json(runs: list[CoderRun]) -> dict[str, Any]:
    """The JSON object `--json` prints."""
    rows = [{**{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()},
             "coded_over_ideal": round(r.coded_over_ideal, 4)} for r in runs]
    return {"message": {"tokens": ROWS, "channels": CHANNELS}, "samples": SAMPLES, "repeats": REPEATS, "runs": rows}


def render_table(runs: list[CoderRun]) -> str:
    lines = [
        f"message ({ROWS}, {CHANNELS}) = {ROWS * CHANNELS} symbols; best of {REPEATS} x {SAMPLES} samples",
        "                 us/sample, RansCoder | us/sample |  bytes/sample         | first",
        "bits prec |    enc    dec  total |  via funcs |  coded  ideal  ratio | decode ms",
    ]
    for r in runs:
        lines.append(
            f"{r.bits:>4} {r.precision:>4} | {r.encode_us:6.1f} {r.decode_us:6.1f} {r.encode_us + r.decode_us:6.1f} | "
            f"{r.via_functions_us:9.1f} | {r.coded_bytes:6.1f} {r.ideal_bytes:6.1f} {r.coded_over_ideal:6.3f} | "
            f"{r.first_decode_ms:6.1f}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the message and the settings are those every bundle uses."""


def run(args: argparse.Namespace) -> int:
    from devtune.bench.output import emit_report

    return emit_report(args, measure, report_json, render_table)
