"""`devtune bench rate`: bytes per sample against every task's metric, for a sweep of
trained split models and for the baselines a split system has to beat.

    sweep point (bits, lambda) ─► train ─► symbols of each test sample ─► rANS, one sample a payload
        bytes, ideal bytes under the tables, encode / decode µs, task metrics (quantized z)
    reference   bits 8, lambda 0, run with unquantized z: the float32 split model
    float32     the encoder output at the split point, (N, D) float32: N*D*4 bytes
    uint8       the reference's 8-bit symbols through the raw-uint8 codec: N*C bytes
    zstd        the same symbols, zstd per sample (minimal frame)
    png, jpeg   cloud-only: the image crosses the wire and the same architecture runs whole
                in the cloud on the decoded image (bytes: the encoded file)

The targets are judged on the smallest point whose every task is within tolerance of
the reference (accuracy and mIoU within 0.01, MAE within 5 % relative).

    devtune bench rate --quick --json      # CI size, a few minutes
    devtune bench rate                     # full sweep: 9 models, about 25 minutes on 2 cores

One job a module:

    config.py     what to train and measure: RateSweep, and the QUICK and FULL presets
    results.py    what was measured: frozen dataclasses up to the RateReport
    sweep.py      train every model and measure it all: measure(sweep) -> RateReport
    coding.py     the split side's bytes: the device's symbols, the bundle's tables, rANS and zstd
    baselines.py  float32, uint8 and zstd of the reference; PNG and JPEG through the cloud-only model
    targets.py    tolerances and the targets, judged on measured numbers (pure)
    report.py     the JSON object and the table
    plot.py       metric against bytes per sample, one subplot per task
    cli.py        the flags, and the command
"""

from __future__ import annotations

from devtune.bench.rate.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
