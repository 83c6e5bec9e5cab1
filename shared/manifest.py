"""The bundle manifest: the schema both halves of a bundle agree on.

A bundle is a directory::

    manifest.json          this schema, as JSON
    device/encoder.onnx    encoder + compressor, image -> bottleneck (B, N, C) float32
                           (text: input_ids, attention_mask (B, T) int64 -> (B, T, C))
    device/tokenizer.json  text bundles only: the model's own tokenizer (``tokenizers``)
    device/heads/*.onnx    optional fallback heads run on the device (symbols -> outputs)
    cloud/trunk.onnx       optional shared trunk: dequantized bottleneck -> features, run
                           once per batch for every task that sits on it
    cloud/<task>.onnx      one decoder per task, dequantized bottleneck (or the trunk's
                           features) -> outputs

An image bundle's representation has a fixed N; a text bundle's N is the token count of
the text a request carries (1..``representation.shape[0]``): one text per request, so no
padding crosses the wire and every token sent is real.

The device fingerprint covers everything that decides which bytes a device sends:
the encoder ONNX, the quantizer and the codec (with its tables), and for text the
tokenizer file and its settings. A cloud bundle that shares the fingerprint can decode
any payload from such a device, whatever tasks (or trunk heads) it adds.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from shared.errors import ConfigError, ProtocolError

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
    "TextInputSpec",
    "TrunkSpec",
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
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # bundle and task names: file names and URL segments as they are
TaskName = Annotated[str, Field(pattern=NAME_PATTERN)]


def check_name(name: str, what: str = "bundle name") -> str:
    """``name`` if a manifest accepts it; else a ConfigError that says what would do (check it
    before training, not when the manifest is written)."""
    if re.fullmatch(NAME_PATTERN, name):
        return name
    fixed = re.sub(r"[^a-z0-9_]", "_", name.lower()).lstrip("_0123456789")[:32] or "default"
    raise ConfigError(f"{what} {name!r} is not valid: use lower-case letters, digits and _, starting with a "
                      f"letter, at most 32 characters (for example {fixed!r})")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """What the encoder takes and how an image becomes that tensor. (No ``kind`` field: image
    manifests stay exactly as they were; a text input says ``"kind": "text"``.)"""

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


class TextInputSpec(_Frozen):
    """Text: the device tokenizes with ``tokenizer`` and runs the encoder on the token ids."""

    kind: Literal["text"]
    tokenizer: str = "device/tokenizer.json"
    """A Hugging Face ``tokenizer.json``, relative to the bundle, loaded with the ``tokenizers`` library."""
    max_tokens: int = Field(ge=2, le=4096)
    """Texts are truncated to this many tokens (special tokens included)."""
    pad_id: int = Field(ge=0)
    """Token id of padding; padded positions have attention_mask 0 and are never sent."""
    lowercase: bool = False
    """Informational: whether the tokenizer lowercases (it does so itself)."""


def _input_kind(value: object) -> str:
    """Which input spec a manifest's ``input`` is: text when it says so, else an image."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "text" if kind == "text" else "image"


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

    def with_tokens(self, tokens: int) -> RepresentationSpec:
        """The same representation for ``tokens`` tokens a sample: what a codec for one text of
        a text bundle (whose ``shape[0]`` is the most tokens a text may have) is built from."""
        return self.model_copy(update={"shape": (tokens, self.shape[1])})


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
    source: Literal["representation", "trunk"] = "representation"
    """What the decoder takes: the dequantized bottleneck (z), or the trunk's features."""


class TrunkSpec(_Frozen):
    """A cloud graph shared by several tasks: run once per batch, its output feeds their heads."""

    file: str = "cloud/trunk.onnx"
    """(z (B, N, C) dequantized, attention_mask (B, N) int64) -> features (B, D) float32."""
    features: int = Field(ge=1)
    """D, the width of the features every trunk head takes."""
    blocks: int = Field(ge=0, default=0)
    """How many blocks of the original model run in the trunk (informational)."""


class FallbackSpec(_Frozen):
    """A small head in the device half that answers one task without the cloud."""

    task: TaskName
    file: str


class Manifest(_Frozen):
    """Everything a bundle promises, with a sha256 for every file it holds."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    format: Literal[1] = 1
    """Manifest schema version (FORMAT_VERSION)."""
    name: TaskName
    version: int = Field(ge=1)
    device_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_spec: Annotated[
        Annotated[InputSpec, Tag("image")] | Annotated[TextInputSpec, Tag("text")], Discriminator(_input_kind)
    ] = Field(alias="input")
    """What the device half takes, ``input`` in the JSON: an image spec, or (``"kind": "text"``)
    a text one. Code for images reads ``input``; code that takes either reads this."""
    representation: RepresentationSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    trunk: TrunkSpec | None = None
    """The shared cloud trunk, when tasks sit on one (``TaskSpec.source`` "trunk")."""
    fallbacks: list[FallbackSpec] = []
    encoder_file: str = "device/encoder.onnx"
    files: dict[str, str]
    """Relative path -> sha256 hex of every file in the bundle but the manifest."""
    training: dict[str, float | int | str] = {}
    """Free-form facts about how the bundle was made (seed, lambda, measured rate...)."""

    @model_validator(mode="after")
    def _check_trunk(self) -> Manifest:
        on_trunk = [task.name for task in self.tasks if task.source == "trunk"]
        if on_trunk and self.trunk is None:
            raise ValueError(f"tasks {on_trunk} sit on a trunk but the manifest names none; rebuild the bundle")
        off_trunk = [task.name for task in self.tasks if task.source != "trunk"]
        if isinstance(self.input_spec, TextInputSpec) and off_trunk:
            # a text's token count varies: only the trunk (which takes the mask) sees the tokens
            raise ValueError(f"a text bundle's tasks sit on its trunk; {off_trunk} do not: rebuild the bundle")
        return self

    @property
    def is_text(self) -> bool:
        return isinstance(self.input_spec, TextInputSpec)

    @property
    def input(self) -> InputSpec:
        """The image input spec; a text bundle refuses with what it takes instead."""
        if isinstance(self.input_spec, TextInputSpec):
            raise ProtocolError(f"bundle {self.name} v{self.version} takes text, not images; send it text "
                                "(devtune predict --text, DeviceClient.predict([...strings]))")
        return self.input_spec

    @property
    def text_input(self) -> TextInputSpec | None:
        """The text input spec, or None for an image bundle."""
        return self.input_spec if isinstance(self.input_spec, TextInputSpec) else None

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


def _canonical(model: BaseModel, exclude: set[str] | None = None) -> bytes:
    wire = model.model_dump(mode="json", exclude=exclude)
    return json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()


def device_fingerprint(
    encoder_onnx: bytes,
    representation: RepresentationSpec,
    text: TextInputSpec | None = None,
    tokenizer: bytes | None = None,
) -> str:
    """sha256 over the encoder graph and every parameter that shapes the payload bytes.

    A text bundle adds its tokenizer file and settings (``text`` and ``tokenizer`` together);
    without them the digest is the one image bundles always had."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(encoder_onnx).digest())
    digest.update(_canonical(representation, exclude={"split_shape"}))
    if (text is None) != (tokenizer is None):
        raise ValueError("a text bundle's fingerprint needs both its TextInputSpec and its tokenizer file")
    if text is not None and tokenizer is not None:
        digest.update(hashlib.sha256(tokenizer).digest())
        digest.update(_canonical(text))
    return digest.hexdigest()
