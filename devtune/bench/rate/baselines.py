"""What a split system has to beat, measured on the same test split as the sweep.

    float32     the reference's encoder output at the split point, (N, D) float32
    uint8       the reference's 8-bit symbols through the raw-uint8 codec
    zstd        the same symbols, zstd per sample
    png, jpeg   cloud-only: the image crosses the wire and the whole model runs in the
                cloud on the decoded image (by default the reference model itself)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from devtune.bench.rate.results import Baseline, Tasks, format_tasks

if TYPE_CHECKING:
    from models.data import Dataset
    from models.train import TrainResult

__all__ = [
    "cloud_only_baselines",
    "jpeg_augmented",
    "reference_baselines",
    "roundtrip_images",
]

def reference_baselines(
    ref: TrainResult, train_data: Dataset, test: Dataset, zstd_level: int, histogram_samples: int
) -> tuple[Baseline, Baseline, Baseline]:
    """float32, uint8 and zstd of the reference model (bits 8, lambda 0).

    The float32 split model runs with z unquantized: sending h (N, D) float32 and running
    the compressor in the cloud computes exactly this. uint8 and zstd carry its 8-bit
    symbols, so their metrics are those of the quantized z.
    """
    from devtune.bench.rate.coding import device_symbols, representation, zstd_sizes
    from models.train import evaluate
    from shared.codecs import codec_for

    cfg8 = ref.model.cfg
    float32 = Baseline(float(cfg8.tokens * cfg8.dim * 4), evaluate(ref, test, quantize=False))
    symbols = device_symbols(ref, test)
    raw_codec = codec_for(representation(ref, train_data, "raw-uint8", histogram_samples))
    raw_bytes = float(np.mean([len(raw_codec.encode(symbols[i : i + 1])) for i in range(len(test))]))
    quantized8 = evaluate(ref, test, quantize=True)
    uint8 = Baseline(raw_bytes, quantized8)
    zstd = Baseline(float(np.mean(zstd_sizes(symbols, zstd_level))), quantized8)
    return float32, uint8, zstd


def cloud_only_baselines(
    cloud: TrainResult, test: Dataset, qualities: tuple[int, ...], progress: Callable[[str], None]
) -> tuple[Tasks, Baseline, list[Baseline]]:
    """The cloud-only model on clean images, on PNG and on JPEG at each quality: (clean, png, jpeg)."""
    from models.train import evaluate

    clean = evaluate(cloud, test, quantize=False)
    decoded, size = roundtrip_images(test.images, "PNG", optimize=True)
    png = Baseline(size, evaluate(cloud, replace(test, images=decoded), quantize=False))
    jpeg = []
    for quality in qualities:
        decoded, size = roundtrip_images(test.images, "JPEG", quality=quality, optimize=True)
        jpeg.append(Baseline(size, evaluate(cloud, replace(test, images=decoded), quantize=False), quality))
        progress(f"JPEG q{quality}: {size:.0f} B/sample, {format_tasks(jpeg[-1].tasks)}")
    return clean, png, jpeg


def roundtrip_images(images: npt.NDArray[np.uint8], fmt: str, **options: Any) -> tuple[np.ndarray, float]:
    """Encode each image with Pillow and decode it again: (decoded images, mean encoded bytes)."""
    from PIL import Image

    decoded = np.empty_like(images)
    total = 0
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, **options)
        total += buffer.tell()
        with Image.open(io.BytesIO(buffer.getvalue())) as back:
            decoded[i] = np.asarray(back.convert("RGB"))
    return decoded, total / len(images)


def jpeg_augmented(data: Dataset, qualities: tuple[int, ...], seed: int) -> Dataset:
    """Half the training images replaced by their JPEG at a quality drawn from the sweep's."""
    rng = np.random.default_rng([seed, 7])
    images = data.images.copy()
    chosen = rng.permutation(len(images))[: len(images) // 2]
    drawn = rng.choice(np.asarray(qualities), size=len(chosen))
    for q in np.unique(drawn):
        idx = chosen[drawn == q]
        images[idx], _ = roundtrip_images(images[idx], "JPEG", quality=int(q), optimize=True)
    return replace(data, images=images)
