"""Regenerate the rANS golden files (codecs ``rans`` and ``rans-lanes``). Run from the repo
root, only on purpose:

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

from shared.entropy import LanesCoder, cdf_from_freqs, encode, quantize_pmf
from shared.protocol import PredictRequest, Representation, pack_request

HERE = Path(__file__).resolve().parent
ROWS, CHANNELS = 64, 8
CASES = [("rans_2bit", 4, 12), ("rans_4bit", 16, 15), ("rans_8bit", 256, 16)]
# rans-lanes: (name, table of CASES, shape, seed). One sample of each bit depth (the Python
# kernels), a batch of four (the numpy kernels) and ragged shapes (partial lanes, fewer lanes).
LANE_CASES = [
    ("lanes_2bit", "rans_2bit", [1, 64, 8], 0),
    ("lanes_4bit", "rans_4bit", [1, 64, 8], 0),
    ("lanes_8bit", "rans_8bit", [1, 64, 8], 0),
    ("lanes_4bit_batch4", "rans_4bit", [4, 64, 8], 7),
    ("lanes_4bit_ragged", "rans_4bit", [2, 61, 8], 11),
    ("lanes_8bit_small", "rans_8bit", [3, 5, 8], 13),
]


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


def lane_symbols(cdf: list[list[int]], precision: int, shape: list[int], seed: int) -> list[int]:
    """Symbols of ``shape`` drawn from the table, flat; 0 and L-1 forced in now and then."""
    rng = Lcg(seed)
    levels = len(cdf[0]) - 1
    flat = []
    for i in range(shape[0] * shape[1] * shape[2]):
        c = i % CHANNELS
        flat.append(bisect.bisect_right(cdf[c], rng.next() % (1 << precision)) - 1)
        if i % 97 == 5:
            flat[-1] = 0
        elif i % 89 == 7:
            flat[-1] = levels - 1
    return flat


def lane_cases(tables: dict[str, tuple[list[list[int]], int]]) -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for name, table, shape, seed in LANE_CASES:
        freqs, precision = tables[table]
        cdf = cdf_from_freqs(np.array(freqs))
        flat = lane_symbols(cdf.tolist(), precision, shape, seed + 99)
        symbols = np.array(flat, dtype=np.uint8).reshape(shape)
        payload = LanesCoder(cdf, precision).encode(symbols)
        (HERE / f"{name}.bin").write_bytes(payload)
        cases.append({"name": name, "file": f"{name}.bin", "table": table, "precision": precision,
                      "shape": shape, "symbols": flat})
    return cases


FINGERPRINT = "0123456789abcdef" + "fedcba9876543210" * 3
# (file name, version, tasks, id, whether the quantization is sent)
PROTOCOL_CASES: list[tuple[str, int, list[str] | None, str | None, bool]] = [
    ("request_v2_minimal", 2, None, None, False),
    ("request_v2_full", 2, ["shape", "size"], "req-1", True),
    ("request_v2_id_only", 2, None, "req-2", False),
    ("request_v1", 1, ["shape"], "req-3", True),
]


def protocol_request(v: int, tasks: list[str] | None, request_id: str | None, quant: bool) -> PredictRequest:
    """The golden requests: a 1 x 64 x 8 rans-lanes batch with payload bytes 0..179."""
    return PredictRequest.model_validate({
        "v": v,
        "bundle": FINGERPRINT if v == 1 else FINGERPRINT[:16],
        "rep": Representation(codec="rans-lanes", shape=(1, 64, 8), data=bytes(range(180)),
                              **({"bits": 4, "scale": 1 / 15, "zero_point": 0} if quant else {})),
        "tasks": tasks,
        "id": request_id,
    })


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
    tables = {str(case["name"]): (case["freqs"], int(case["precision"])) for case in cases}
    lanes = {
        "about": "rans-lanes golden inputs: LanesCoder(cdf_from_freqs(freqs of rans_golden.json case "
        "'table'), precision).encode(symbols reshaped to shape) == file bytes",
        "cases": lane_cases(tables),
    }
    (HERE / "lanes_golden.json").write_text(json.dumps(lanes, separators=(",", ":")) + "\n")
    for name, v, tasks, request_id, quant in PROTOCOL_CASES:
        (HERE / f"{name}.bin").write_bytes(pack_request(protocol_request(v, tasks, request_id, quant)))


if __name__ == "__main__":
    main()
