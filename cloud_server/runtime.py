"""The cloud half of a bundle: decoders on ONNX Runtime, and the checks before them.

A bundle with a trunk (``cloud/trunk.onnx``) runs it once over a batch's rows and feeds every
wanted head from its features: k tasks cost one trunk pass and k small heads. A text bundle's
request carries one text of T tokens, T varying; ``decode`` pads its z to the bundle's most
tokens and appends the attention mask as one more channel, so requests of any length stack
into one batch (the batcher concatenates rows) and the trunk still sees which tokens are real.
"""

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
from shared.errors import CodecError, FingerprintMismatch, ProtocolError, UnknownTask
from shared.manifest import Manifest
from shared.protocol import PredictRequest, fingerprint_matches
from shared.quantization import dequantize

__all__ = ["CloudBundle", "Decoded"]


@dataclass(frozen=True)
class Decoded:
    """A request after every check: what the decoders will run on."""

    z: npt.NDArray[np.float32]  # (B, N, C) dequantized; text: (B, max_tokens, C + 1), the mask last
    tasks: list[str]
    decode_ms: float


class CloudBundle:
    """Loads only the cloud half (manifest + decoders), each file checked against its sha256."""

    def __init__(self, bundle_dir: str | Path, threads: int = 1) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle_dir)
        self.codec = codec_for(self.manifest.representation)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {
            task.name: ort.InferenceSession(
                read_bytes_checked(self.bundle_dir, self.manifest, task.file),
                options,
                providers=["CPUExecutionProvider"],
            )
            for task in self.manifest.tasks
        }
        self.task_names = list(self.sessions)
        self.default_tasks = self.manifest.default_tasks  # what a request naming no task gets
        self.on_trunk = {task.name for task in self.manifest.tasks if task.source == "trunk"}
        self.trunk: ort.InferenceSession | None = None
        if self.manifest.trunk is not None:
            self.trunk = ort.InferenceSession(
                read_bytes_checked(self.bundle_dir, self.manifest, self.manifest.trunk.file),
                options,
                providers=["CPUExecutionProvider"],
            )
        self.text = self.manifest.is_text
        self.trunk_passes = 0  # how often the trunk ran: once per batch, whatever the tasks
        self._codecs: dict[int, Codec] = {}

    @property
    def fingerprint(self) -> str:
        return self.manifest.device_fingerprint

    def warm_up(self) -> None:
        """Run every decoder once so the first real request pays no start-up cost."""
        n, c = self.manifest.representation.shape
        z = self._rows(np.zeros((1, min(n, 2) if self.text else n, c), dtype=np.float32))
        self.run_tasks(z, self.task_names)
        self.trunk_passes = 0

    def decode(self, request: PredictRequest) -> Decoded:
        """Check a request against this bundle and turn its payload into decoder input.

        ``request.bundle`` is the full fingerprint (v1) or its first 16 hex digits (v2); the
        quantization is the bundle's unless the request sends it, and then it must agree."""
        if not fingerprint_matches(request.bundle, self.fingerprint):
            raise FingerprintMismatch(
                f"payload was made by device half {request.bundle[:16]}..., this server serves "
                f"{self.manifest.name} v{self.manifest.version} with fingerprint {self.fingerprint}; "
                "update the device bundle or point it at the matching server",
                expected=self.fingerprint,
                got=request.bundle,
            )
        spec = self.manifest.representation
        rep = request.rep
        if rep.codec != spec.codec:
            raise CodecError(
                f"codec {rep.codec!r} is not accepted: this bundle's payloads use {spec.codec!r}"
            )
        quant = spec.quant
        sent = (rep.bits, rep.scale, rep.zero_point)
        if sent != (None, None, None) and (
            rep.bits != quant.bits
            or rep.zero_point != quant.zero_point
            or rep.scale is None
            or not np.isclose(rep.scale, quant.scale)
        ):
            raise ProtocolError(
                f"quantization (bits={rep.bits}, scale={rep.scale}, zero_point={rep.zero_point}) differs "
                f"from the bundle's (bits={quant.bits}, scale={quant.scale}, zero_point={quant.zero_point}); "
                "send the bundle's, or none (protocol v2) to use the bundle's"
            )
        tasks = self.resolve_tasks(request.tasks)
        started = time.perf_counter()
        symbols = self.codec_for(rep.shape).decode(rep.data, rep.shape)
        z = self._rows(dequantize(symbols, quant))
        return Decoded(z, tasks, (time.perf_counter() - started) * 1000)

    def decode_symbols(self, symbols: npt.NDArray[np.uint8], tasks: list[str] | None) -> Decoded:
        """Already-decoded symbols (B, N, C) from a front end that carries plain tensors (OIP);
        for text every one of the N tokens is real."""
        self.codec_for(symbols.shape).check_symbols(symbols)
        resolved = self.resolve_tasks(tasks)
        started = time.perf_counter()
        z = self._rows(dequantize(symbols, self.manifest.representation.quant))
        return Decoded(z, resolved, (time.perf_counter() - started) * 1000)

    def codec_for(self, shape: tuple[int, ...]) -> Codec:
        """The codec for a representation of ``shape`` (B, N, C): the bundle's; for text, the
        bundle's tables for this text's N tokens (1..max_tokens)."""
        if not self.text:
            return self.codec
        most, channels = self.manifest.representation.shape
        if len(shape) != 3 or not 1 <= shape[1] <= most or shape[2] != channels or shape[0] < 1:
            raise CodecError(
                f"representation shape {list(shape)} does not fit this text bundle: [B, T, {channels}] with "
                f"1 <= T <= {most} tokens; encode with the same bundle"
            )
        tokens = int(shape[1])
        if tokens not in self._codecs:
            self._codecs[tokens] = codec_for(self.manifest.representation.with_tokens(tokens))
        return self._codecs[tokens]

    def _rows(self, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Decoder input for z (B, T, C): as is; text: padded to max_tokens, the mask appended."""
        if not self.text:
            return z
        b, t, c = z.shape
        rows = np.zeros((b, self.manifest.representation.shape[0], c + 1), dtype=np.float32)
        rows[:, :t, :c] = z
        rows[:, :t, c] = 1.0
        return rows

    def features(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The trunk's features (B, D) for decoder input ``rows``: one trunk pass, which every
        head of the batch then reads (``run_tasks``, the batcher)."""
        if self.trunk is None:
            raise UnknownTask(f"{self.manifest.name} has no trunk; its tasks take the representation",
                              known=self.task_names)
        if self.text:
            mask = rows[:, :, -1]
            tokens = max(1, int(mask.sum(axis=1).max()))  # drop the padding no row uses
            z, attention = rows[:, :tokens, :-1], mask[:, :tokens].astype(np.int64)
        else:
            z, attention = rows, np.ones(rows.shape[:2], dtype=np.int64)
        (out,) = self.trunk.run(None, {"z": np.ascontiguousarray(z), "attention_mask": attention})
        self.trunk_passes += 1  # how many trunk passes ran (tests check one a batch)
        return np.asarray(out, dtype=np.float32)

    def run_head(self, task: str, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """A trunk head on features (B, D) that ``features`` gave (a caller may take any rows of them)."""
        (out,) = self.sessions[task].run(None, {"features": np.ascontiguousarray(features)})
        return np.asarray(out)

    def run_tasks(self, rows: npt.NDArray[np.float32], tasks: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Every task in ``tasks`` on the same rows: the trunk (if any) once, then each head."""
        features = self.features(rows) if any(task in self.on_trunk for task in tasks) else None
        return {task: self.run_head(task, features) if features is not None and task in self.on_trunk
                else self.run(task, rows) for task in tasks}

    def resolve_tasks(self, tasks: list[str] | None) -> list[str]:
        if tasks is None:
            return self.default_tasks
        unknown = [t for t in tasks if t not in self.sessions]
        if unknown:
            raise UnknownTask(
                f"unknown task(s) {unknown}; this bundle serves {self.task_names}",
                known=self.task_names,
            )
        if not tasks:
            raise ProtocolError(f"empty task list; leave it out for all tasks or name some of {self.task_names}")
        return list(dict.fromkeys(tasks))

    def run(self, task: str, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One task's output for decoder input ``z`` (what ``decode`` made, rows concatenated)."""
        if task in self.on_trunk:
            return self.run_head(task, self.features(z))
        (out,) = self.sessions[task].run(None, {"z": z})
        return np.asarray(out)
