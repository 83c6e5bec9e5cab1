"""The cloud half of a bundle: decoders on ONNX Runtime, and the checks before them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from shared.bundle import read_bytes_checked, read_manifest
from shared.codecs import codec_for
from shared.errors import CodecError, FingerprintMismatch, ProtocolError, UnknownTask
from shared.manifest import Manifest
from shared.protocol import PredictRequest, fingerprint_matches
from shared.quantization import dequantize

__all__ = ["CloudBundle", "Decoded"]


@dataclass(frozen=True)
class Decoded:
    """A request after every check: what the decoders will run on."""

    z: npt.NDArray[np.float32]  # (B, N, C) dequantized
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

    @property
    def fingerprint(self) -> str:
        return self.manifest.device_fingerprint

    def warm_up(self) -> None:
        """Run every decoder once so the first real request pays no start-up cost."""
        n, c = self.manifest.representation.shape
        z = np.zeros((1, n, c), dtype=np.float32)
        for name in self.task_names:
            self.run(name, z)

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
        symbols = self.codec.decode(rep.data, rep.shape)
        z = dequantize(symbols, quant)
        return Decoded(z, tasks, (time.perf_counter() - started) * 1000)

    def decode_symbols(self, symbols: npt.NDArray[np.uint8], tasks: list[str] | None) -> Decoded:
        """Already-decoded symbols (B, N, C) from a front end that carries plain tensors (OIP)."""
        self.codec.check_symbols(symbols)
        resolved = self.resolve_tasks(tasks)
        started = time.perf_counter()
        z = dequantize(symbols, self.manifest.representation.quant)
        return Decoded(z, resolved, (time.perf_counter() - started) * 1000)

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
        (out,) = self.sessions[task].run(None, {"z": z})
        return np.asarray(out)
