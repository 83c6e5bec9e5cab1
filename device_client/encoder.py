"""The device half of a bundle: images (or texts) -> encoder ONNX -> symbols -> payload bytes.

A text bundle (``manifest.input.kind == "text"``) tokenizes with its own ``device/tokenizer.json``
through the ``tokenizers`` library and runs the encoder on (input_ids, attention_mask). A text
is encoded alone, as its T real tokens (1, T, C): nothing padded crosses the wire."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from shared.bundle import read_bytes_checked, read_manifest
from shared.codecs import Codec, codec_for
from shared.errors import BundleError, ConfigError
from shared.images import ImageLike, preprocess
from shared.manifest import Manifest, TextInputSpec
from shared.protocol import PredictRequest, Representation
from shared.quantization import dequantize, quantize

__all__ = ["DeviceEncoder", "Encoded", "ImageLike", "TextTokenizer"]


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


class TextTokenizer:
    """A text bundle's ``tokenizer.json`` (checked against its sha256), truncating as the manifest says."""

    def __init__(self, content: bytes, spec: TextInputSpec) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # the [device] extra has it; a hand-made install may not
            raise ConfigError("a text bundle needs the tokenizers library: pip install 'device-tuning[device]'") \
                from exc
        self.spec = spec
        self.tokenizer = Tokenizer.from_str(content.decode("utf-8"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(spec.max_tokens)

    def __call__(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """One text -> (input_ids, attention_mask), both (1, T) int64 over its T real tokens."""
        if not isinstance(text, str):
            raise ConfigError(f"a text bundle takes strings, got {type(text).__name__}; pass the text itself")
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        if ids.shape[1] == 0:
            raise ConfigError(f"text {text!r} has no tokens; send some text")
        return ids, np.ones_like(ids)


class DeviceEncoder:
    """Loads only the device half of a bundle and refuses files that fail their sha256."""

    def __init__(self, bundle_dir: str | Path, threads: int = 0) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle_dir)
        encoder = read_bytes_checked(self.bundle_dir, self.manifest, self.manifest.encoder_file)
        self.session = _session(encoder, threads)
        self.codec = codec_for(self.manifest.representation)
        self._codecs: dict[int, Codec] = {}  # text: one codec per token count
        self.tokenizer: TextTokenizer | None = None
        text = self.manifest.text_input
        if text is not None:
            self.tokenizer = TextTokenizer(read_bytes_checked(self.bundle_dir, self.manifest, text.tokenizer), text)
        self.heads = {
            f.task: _session(read_bytes_checked(self.bundle_dir, self.manifest, f.file), threads)
            for f in self.manifest.fallbacks
        }

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    def preprocess(self, images: Sequence[ImageLike]) -> npt.NDArray[np.float32]:
        """Files or (H, W, 3) uint8 arrays of any size -> (B, 3, H, W) normalized float32."""
        return preprocess(images, self.manifest.input)

    def encode(self, images: Sequence[ImageLike]) -> Encoded:
        """Images -> one payload for the batch; a text bundle takes one string (``encode_text``)."""
        if not images:
            raise ValueError("no images to encode; pass at least one file or array")
        if self.tokenizer is not None:
            if len(images) != 1:
                raise ConfigError(f"a text bundle sends one text per request, got {len(images)}; "
                                  "encode them one by one (DeviceClient.predict does)")
            return self.encode_text(images[0])  # type: ignore[arg-type]
        started = time.perf_counter()
        symbols = self.symbols(images)
        payload = self.codec.encode(symbols)
        return Encoded(symbols, payload, (time.perf_counter() - started) * 1000)

    def encode_text(self, text: str) -> Encoded:
        """One text -> symbols (1, T, C) of its T tokens and their payload."""
        started = time.perf_counter()
        symbols = self.text_symbols(text)
        payload = self.codec_for_tokens(symbols.shape[1]).encode(symbols)
        return Encoded(symbols, payload, (time.perf_counter() - started) * 1000)

    def codec_for_tokens(self, tokens: int) -> Codec:
        """The bundle's codec for a text of ``tokens`` tokens (the tables are per channel)."""
        if tokens not in self._codecs:
            self._codecs[tokens] = codec_for(self.manifest.representation.with_tokens(tokens))
        return self._codecs[tokens]

    def text_symbols(self, text: str) -> npt.NDArray[np.uint8]:
        """One text -> quantized symbols (1, T, C)."""
        if self.tokenizer is None:
            raise ConfigError(f"bundle {self.manifest.name} takes images, not text; pass image files or arrays")
        ids, mask = self.tokenizer(text)
        (z,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})  # (1, T, C) float32
        return quantize(z, self.manifest.representation.quant)

    def symbols(self, images: Sequence[ImageLike]) -> npt.NDArray[np.uint8]:
        """Images -> quantized symbols (B, N, C), without the entropy codec (device-only needs none)."""
        if self.tokenizer is not None and len(images) == 1:
            return self.text_symbols(images[0])  # type: ignore[arg-type]
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

