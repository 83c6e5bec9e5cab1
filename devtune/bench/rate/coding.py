"""The split side's bytes: the symbols a device sends, the coder tables its bundle carries,
and what rANS and zstd make of each test sample on its own (one sample, one payload)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from devtune.bench.rate.results import CodedSizes
from devtune.bench.rate.targets import CODED_SLOPE

if TYPE_CHECKING:  # the CLI imports this package to build its parser: no torch at import time
    from models.data import Dataset
    from models.train import TrainResult
    from shared.manifest import CodecName, RepresentationSpec

__all__ = ["code_each", "device_symbols", "representation", "zstd_sizes"]


def device_symbols(result: TrainResult, data: Dataset) -> npt.NDArray[np.uint8]:
    """(B, N, C) symbols exactly as the device sends them (torch float32 for the ONNX graph)."""
    import torch

    from models.export import quant_spec
    from models.train import to_tensor
    from shared.quantization import quantize

    quant = quant_spec(result.model.cfg)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(data), 256):
            z = result.model.device_forward(to_tensor(data.images[start : start + 256])).numpy()
            chunks.append(quantize(z, quant))
    return np.concatenate(chunks)


def representation(result: TrainResult, train_data: Dataset, codec: CodecName, limit: int) -> RepresentationSpec:
    """The RepresentationSpec export_bundle would write for ``result``: the same tables, from the same function."""
    from models.export import representation_spec, symbol_histogram

    return representation_spec(result.model.cfg, symbol_histogram(result.model, train_data, limit=limit), codec)


def zstd_sizes(symbols: npt.NDArray[np.uint8], level: int) -> list[int]:
    """zstd of each sample's symbols on its own, with the smallest frame zstd allows."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    frames = [compressor.compress(s.tobytes()) for s in symbols]
    first = zstandard.ZstdDecompressor().decompress(frames[0], max_output_size=symbols[0].nbytes)
    if first != symbols[0].tobytes():
        raise RuntimeError("zstd did not round-trip a sample; check the zstandard install")
    return [len(f) for f in frames]


def code_each(spec: RepresentationSpec, symbols: npt.NDArray[np.uint8]) -> CodedSizes:
    """rANS-code every sample on its own with the bundle codec; sizes, ideal sizes, timings."""
    from shared.codecs import codec_for
    from shared.entropy import ideal_bits

    if spec.entropy is None:
        raise ValueError("rANS needs entropy tables; build the spec with codec 'rans'")
    codec = codec_for(spec)
    freqs, precision = spec.entropy.freqs, spec.entropy.precision
    shape = (1, *spec.shape)
    codec.decode(codec.encode(symbols[:1]), shape)  # the first decode builds the lookup tables
    sizes, ideal, enc_ns, dec_ns = [], [], [], []
    for i in range(len(symbols)):
        one = symbols[i : i + 1]
        t0 = time.perf_counter_ns()
        payload = codec.encode(one)
        t1 = time.perf_counter_ns()
        back = codec.decode(payload, shape)
        t2 = time.perf_counter_ns()
        if not np.array_equal(back, one):
            raise RuntimeError(f"rANS did not round-trip test sample {i}; the coder is broken")
        sizes.append(len(payload))
        ideal.append(ideal_bits(one, freqs, precision) / 8)
        enc_ns.append(t1 - t0)
        dec_ns.append(t2 - t1)
    coded, ideal_arr = np.asarray(sizes, float), np.asarray(ideal)
    return CodedSizes(
        bytes_per_sample=float(coded.mean()),
        ideal_bytes_per_sample=float(ideal_arr.mean()),
        coded_over_ideal=float(coded.sum() / ideal_arr.sum()),
        worst_excess_bytes=float((coded - CODED_SLOPE * ideal_arr).max()),
        encode_us=float(np.median(enc_ns)) / 1e3,
        decode_us=float(np.median(dec_ns)) / 1e3,
    )
