"""Device-only inference: the bundle's cloud decoders, run on the device with ONNX Runtime.

When the bundle directory on the device also holds ``cloud/<task>.onnx`` (each file checked
against the manifest's sha256), ``DeviceClient(mode="device")`` answers without the network:
encoder -> quantize -> dequantize -> decoders, the entropy codec skipped (nothing crosses a wire).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from shared.bundle import read_bytes_checked
from shared.errors import BundleError, UnknownTask
from shared.manifest import Manifest
from shared.predictions import to_predictions
from shared.protocol import Prediction
from shared.quantization import dequantize

__all__ = ["LocalDecoders"]


class LocalDecoders:
    """Every task decoder the bundle directory holds, loaded for the device."""

    def __init__(self, bundle_dir: str | Path, manifest: Manifest, threads: int = 0) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        present = [task for task in manifest.tasks if (self.bundle_dir / task.file).is_file()]
        if not present:
            raise BundleError(
                f"device-only inference runs the cloud decoders on the device, but {self.bundle_dir} has none "
                f"of {[t.file for t in manifest.tasks]}; copy the bundle's cloud/ folder to the device "
                "or use mode='split'"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.sessions = {
            task.name: ort.InferenceSession(
                read_bytes_checked(self.bundle_dir, manifest, task.file), options, providers=["CPUExecutionProvider"]
            )
            for task in present
        }

    @property
    def task_names(self) -> list[str]:
        return list(self.sessions)

    def predict(
        self, symbols: npt.NDArray[np.uint8], tasks: Sequence[str] | None = None
    ) -> tuple[dict[str, list[Prediction]], float]:
        """Predictions for quantized symbols (B, N, C), and the milliseconds the decoders took."""
        # No tasks named: the bundle's default ones (as the server answers), those this device holds.
        defaults = [name for name in self.manifest.default_tasks if name in self.sessions]
        wanted = list(tasks) if tasks is not None else defaults
        missing = [task for task in wanted if task not in self.sessions]
        if missing:
            raise UnknownTask(
                f"task(s) {missing} have no decoder on this device (it has {self.task_names}); copy their "
                "cloud/*.onnx into the bundle directory or send them to the cloud",
                known=self.task_names,
            )
        started = time.perf_counter()
        z = dequantize(symbols, self.manifest.representation.quant)  # (B, N, C) float32
        predictions = {}
        for task in wanted:
            (out,) = self.sessions[task].run(None, {"z": z})
            predictions[task] = to_predictions(self.manifest.task(task), np.asarray(out, dtype=np.float32))
        return predictions, (time.perf_counter() - started) * 1000
