"""The device half of a bundle: images -> encoder ONNX -> symbols -> payload bytes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from shared.bundle import read_bytes_checked, read_manifest
from shared.codecs import codec_for
from shared.errors import BundleError
from shared.images import ImageLike, preprocess
from shared.manifest import Manifest
from shared.protocol import PredictRequest, Representation
from shared.quantization import dequantize, quantize

__all__ = ["DeviceEncoder", "Encoded", "ImageLike"]

@dataclass(frozen=True)
class Encoded:
    """One batch as it leaves the device."""

    symbols: npt.NDArray[np.uint8]  # (B, N, C)
    payload: bytes  # the codec's bytes for all B samples
    encode_ms: float  # ONNX + quantize + codec, wall time


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class DeviceEncoder:
    """Loads only the device half of a bundle and refuses files that fail their sha256."""

    def __init__(self, bundle_dir: str | Path, threads: int = 0) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle_dir)
        encoder = read_bytes_checked(self.bundle_dir, self.manifest, self.manifest.encoder_file)
        self.session = _session(encoder, threads)
        self.codec = codec_for(self.manifest.representation)
        self.heads = {
            f.task: _session(read_bytes_checked(self.bundle_dir, self.manifest, f.file), threads)
            for f in self.manifest.fallbacks
        }

    def preprocess(self, images: Sequence[ImageLike]) -> npt.NDArray[np.float32]:
        """Files or (H, W, 3) uint8 arrays of any size -> (B, 3, H, W) normalized float32."""
        return preprocess(images, self.manifest.input)

    def encode(self, images: Sequence[ImageLike]) -> Encoded:
        if not images:
            raise ValueError("no images to encode; pass at least one file or array")
        started = time.perf_counter()
        symbols = self.symbols(images)
        payload = self.codec.encode(symbols)
        return Encoded(symbols, payload, (time.perf_counter() - started) * 1000)

    def symbols(self, images: Sequence[ImageLike]) -> npt.NDArray[np.uint8]:
        """Images -> quantized symbols (B, N, C), without the entropy codec (device-only needs none)."""
        x = self.preprocess(images)  # (B, 3, H, W)
        (z,) = self.session.run(None, {"image": x})  # (B, N, C) float32
        return quantize(z, self.manifest.representation.quant)

    def request(
        self,
        encoded: Encoded,
        tasks: Sequence[str] | None = None,
        request_id: str | None = None,
        protocol: int = 1,
    ) -> PredictRequest:
        """The request for ``encoded``, for ``pack_request``. ``protocol`` 2 is the compact form
        (bundle id, codec number, no quantization: the bundle's); 1, the default here for callers
        that take the body apart as a map, is the original. ``DeviceClient`` sends 2."""
        quant = self.manifest.representation.quant
        b, n, c = encoded.symbols.shape
        v1 = protocol == 1
        return PredictRequest(
            v=protocol,
            bundle=self.manifest.device_fingerprint if v1 else self.manifest.device_fingerprint[:16],
            rep=Representation(
                codec=self.manifest.representation.codec,
                shape=(b, n, c),
                bits=quant.bits if v1 else None,
                scale=quant.scale if v1 else None,
                zero_point=quant.zero_point if v1 else None,
                data=encoded.payload,
            ),
            tasks=list(tasks) if tasks is not None else None,
            id=request_id,
        )

    def run_fallback(self, task: str, symbols: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Run the device-side head for ``task`` on quantized symbols."""
        if task not in self.heads:
            raise BundleError(
                f"no device fallback head for task {task!r}; this bundle has {sorted(self.heads) or 'none'}"
            )
        z = dequantize(symbols, self.manifest.representation.quant)
        (out,) = self.heads[task].run(None, {"z": z})
        return np.asarray(out, dtype=np.float32)

