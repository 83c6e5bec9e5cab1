"""Regenerate the rANS golden files. Run from the repo root, only on purpose:

    python -m tests.shared.golden.make_golden

A changed .bin means the wire format changed: every bundle's payloads break with it.
Inputs come from integer weights and a fixed LCG, not from numpy's RNG or libm, so
this script writes the same JSON on every platform.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np

from shared.entropy import cdf_from_freqs, encode, quantize_pmf

HERE = Path(__file__).resolve().parent
ROWS, CHANNELS = 64, 8
CASES = [("rans_2bit", 4, 12), ("rans_4bit", 16, 15), ("rans_8bit", 256, 16)]


class Lcg:
    """Knuth's MMIX 64-bit LCG; the top 32 bits are used."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def next(self) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return self.state >> 32


def weights(levels: int) -> list[list[int]]:
    """Peaked integer weights per channel, centre and width varying; far tails are 0."""
    rows = []
    for c in range(CHANNELS):
        centre = (levels * (2 * c + 3)) // (4 * CHANNELS) + levels // 4
        width = 1 + c * max(1, levels // 32)
        rows.append([max(0, 10**6 // (1 + ((s - centre) ** 2) // width) - 200) for s in range(levels)])
    return rows


def symbols(cdf: list[list[int]], precision: int, seed: int) -> list[list[int]]:
    """ROWS samples per channel drawn from the table, with 0, L-1 and rarest symbols forced in."""
    rng = Lcg(seed)
    levels = len(cdf[0]) - 1
    rows = [
        [bisect.bisect_right(cdf[c], rng.next() % (1 << precision)) - 1 for c in range(CHANNELS)]
        for _ in range(ROWS)
    ]
    for c in range(CHANNELS):
        freqs = [cdf[c][s + 1] - cdf[c][s] for s in range(levels)]
        rows[c][c] = 0
        rows[ROWS - 1 - c][c] = levels - 1
        rows[ROWS // 2 + c][c] = freqs.index(min(freqs))
    return rows


def main() -> None:
    cases = []
    for index, (name, levels, precision) in enumerate(CASES):
        weight_rows = weights(levels)
        freqs = quantize_pmf(np.array(weight_rows, dtype=np.float64), precision)
        cdf = cdf_from_freqs(freqs)
        sample = symbols(cdf.tolist(), precision, seed=1234 + index)
        payload = encode(np.array(sample, dtype=np.uint8), cdf, precision)
        (HERE / f"{name}.bin").write_bytes(payload)
        cases.append(
            {
                "name": name,
                "file": f"{name}.bin",
                "precision": precision,
                "shape": [ROWS, CHANNELS],
                "weights": weight_rows,
                "freqs": freqs.tolist(),
                "symbols": sample,
            }
        )
    doc = {
        "about": "rANS golden inputs: quantize_pmf(weights, precision) == freqs, "
        "encode(symbols, cdf_from_freqs(freqs), precision) == file bytes",
        "cases": cases,
    }
    (HERE / "rans_golden.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
