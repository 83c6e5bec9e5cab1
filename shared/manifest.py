"""The bundle manifest: the schema both halves of a bundle agree on.

A bundle is a directory::

    manifest.json          this schema, as JSON
    device/encoder.onnx    encoder + compressor, image -> bottleneck (B, N, C) float32
    device/heads/*.onnx    optional fallback heads run on the device (symbols -> outputs)
    cloud/<task>.onnx      one decoder per task, dequantized bottleneck -> outputs

The device fingerprint covers everything that decides which bytes a device sends:
the encoder ONNX, the quantizer and the codec (with its tables). A cloud bundle that
shares the fingerprint can decode any payload from such a device, whatever tasks it adds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CODEC_IDS",
    "DEFAULT_CODEC",
    "ENTROPY_CODECS",
    "FORMAT_VERSION",
    "CodecName",
    "EntropySpec",
    "FallbackSpec",
    "InputSpec",
    "Manifest",
    "QuantSpec",
    "RepresentationSpec",
    "TaskKind",
    "TaskSpec",
    "device_fingerprint",
]

FORMAT_VERSION = 1

TaskKind = Literal["classification", "regression", "dense", "image"]
"""``image``: an RGB picture in [0, 1], (3, H, W); the preview of what the representation keeps."""
CodecName = Literal["raw-uint8", "packed", "rans", "rans-lanes"]
DEFAULT_CODEC: CodecName = "rans"
"""The codec new bundles use. ``rans`` is 6-13 bytes a sample smaller than ``rans-lanes`` and as
fast for one sample; ``rans-lanes`` pays off where whole batches are decoded together (5-7x at
64 samples, 10-20x at 256), which the server does not do yet: it decodes each request alone."""
ENTROPY_CODECS: frozenset[str] = frozenset({"rans", "rans-lanes"})
"""Codecs that need ``RepresentationSpec.entropy`` tables."""
CODEC_IDS: dict[str, int] = {"raw-uint8": 0, "packed": 1, "rans": 2, "rans-lanes": 3}
"""Stable small integers for the codec names, as protocol v2 sends them. Never reuse one."""
TaskName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """What the encoder takes and how an image becomes that tensor."""

    shape: tuple[int, int, int]
    """(C, H, W) of one sample; images are resized to (H, W)."""
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["RGB"] = "RGB"
    resize: Literal["bilinear"] = "bilinear"
    """Resampling filter used when an image's size differs from (H, W)."""
    mean: tuple[float, float, float]
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, float, float]
    """Per-channel std divided by after subtracting the mean."""


class QuantSpec(_Frozen):
    """Affine scalar quantizer: symbol = clip(round(z / scale) + zero_point, 0, 2**bits - 1)."""

    scheme: Literal["affine"] = "affine"
    bits: Literal[2, 4, 8]
    scale: float = Field(gt=0)
    zero_point: int = Field(ge=0, le=255)

    @property
    def levels(self) -> int:
        return 1 << self.bits


class EntropySpec(_Frozen):
    """Integer frequency tables for the rANS codec, one row per channel."""

    precision: int = Field(ge=8, le=16)
    """Every row of ``freqs`` sums to 2**precision."""
    freqs: list[list[int]]
    """(C, 2**bits) symbol frequencies, each at least 1."""


class RepresentationSpec(_Frozen):
    """What crosses the wire for one sample."""

    shape: tuple[int, int]
    """(N, C): N tokens of C channels per sample, after the compressor."""
    dtype: Literal["uint8"] = "uint8"
    quant: QuantSpec
    codec: CodecName
    entropy: EntropySpec | None = None
    """Required when the codec is one of ``ENTROPY_CODECS`` ("rans", "rans-lanes")."""
    split_shape: tuple[int, int]
    """(N, D) of the encoder output before the compressor, for size comparisons."""


class TaskSpec(_Frozen):
    """One task a bundle serves."""

    name: TaskName
    kind: TaskKind
    classes: list[str] | None = None
    """Class names, for classification and dense tasks."""
    units: str | None = None
    """Units of regression values."""
    output_shape: tuple[int, ...]
    """Per-sample shape of the decoder output (logits or values)."""
    metric: str
    """Name of the metric this task is judged by (accuracy, mae, miou)."""
    higher_is_better: bool
    file: str
    """Path of the decoder ONNX, relative to the bundle directory."""
    default: bool = True
    """Answered when a request names no tasks; False: only when asked for by name (the preview)."""


class FallbackSpec(_Frozen):
    """A small head in the device half that answers one task without the cloud."""

    task: TaskName
    file: str


class Manifest(_Frozen):
    """Everything a bundle promises, with a sha256 for every file it holds."""

    format: Literal[1] = 1
    """Manifest schema version (FORMAT_VERSION)."""
    name: TaskName
    version: int = Field(ge=1)
    device_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    representation: RepresentationSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    fallbacks: list[FallbackSpec] = []
    encoder_file: str = "device/encoder.onnx"
    files: dict[str, str]
    """Relative path -> sha256 hex of every file in the bundle but the manifest."""
    training: dict[str, float | int | str] = {}
    """Free-form facts about how the bundle was made (seed, lambda, measured rate...)."""

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    @property
    def default_tasks(self) -> list[str]:
        """The tasks a request that names none gets."""
        return [task.name for task in self.tasks if task.default]

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)


def device_fingerprint(encoder_onnx: bytes, representation: RepresentationSpec) -> str:
    """sha256 over the encoder graph and every parameter that shapes the payload bytes."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(encoder_onnx).digest())
    wire = representation.model_dump(mode="json", exclude={"split_shape"})
    digest.update(json.dumps(wire, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()
