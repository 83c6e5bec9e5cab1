"""A split text model as a bundle: device half and its tokenizer, a shared cloud trunk, heads on it.

    device/encoder.onnx     input_ids, attention_mask (B,T) int64 -> z (B,T,C) in [0, 1]
    device/tokenizer.json   the model's own tokenizer, as the ``tokenizers`` library reads it
    cloud/trunk.onnx        dequantized z (B,T,C), attention_mask (B,T) -> features (B,D)
    cloud/<task>.onnx       features (B,D) -> logits or values (``TaskSpec.source`` "trunk")

A text crosses the wire alone, as (1, T, C) symbols of its T real tokens; the manifest's
``representation.shape`` is (max_tokens, C), the most a text may have. The coder's tables
come from the symbols of real tokens over the training texts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from models.dataset import TaskInfo
from models.export import quant_spec, representation_spec, task_spec
from models.pretrained.encoder import LoadedEncoder
from models.pretrained.fit import FitResult
from models.pretrained.onnx import export_split
from models.pretrained.split import SplitModel
from models.textdata import TextDataset
from shared.bundle import hash_files, write_manifest
from shared.codecs import Codec, codec_for
from shared.manifest import (
    DEFAULT_CODEC,
    Manifest,
    RepresentationSpec,
    TaskSpec,
    TextInputSpec,
    TrunkSpec,
    device_fingerprint,
)
from shared.quantization import quantize

__all__ = ["TOKENIZER_FILE", "TRUNK_FILE", "export_text_bundle", "head_spec", "text_symbols"]

TOKENIZER_FILE = "device/tokenizer.json"
TRUNK_FILE = "cloud/trunk.onnx"


@torch.no_grad()
def text_symbols(model: SplitModel, encoder: LoadedEncoder, texts: list[str]) -> list[np.ndarray]:
    """The symbols (1, T, C) uint8 each text is sent as: its real tokens only."""
    quant = quant_spec(model.cfg.compressor_config(model.dim))
    model.eval()
    out = []
    for start in range(0, len(texts), 128):
        ids, mask = encoder.tokenize(texts[start:start + 128])
        z = model.device_half(torch.from_numpy(ids), torch.from_numpy(mask).float()).numpy()
        for row, length in zip(quantize(z, quant), mask.sum(axis=1)):
            out.append(row[None, : int(length)])
    return out


def _counts(symbols: list[np.ndarray], channels: int, levels: int) -> np.ndarray:
    tokens = np.concatenate([s[0] for s in symbols])  # (all real tokens, C)
    return np.stack([np.bincount(tokens[:, c], minlength=levels) for c in range(channels)])


def head_spec(info: TaskInfo, model: SplitModel) -> TaskSpec:
    """The manifest entry of a head on the trunk."""
    head = model.heads[info.name].head  # type: ignore[union-attr]
    spec = task_spec(head, info, model.cfg.compressor_config(model.dim))  # type: ignore[arg-type]
    return spec.model_copy(update={"source": "trunk"})


def _representation(model: SplitModel, counts: np.ndarray, codec: str, max_tokens: int) -> RepresentationSpec:
    spec = representation_spec(model.cfg.compressor_config(model.dim), counts, codec)
    return spec.model_copy(update={"shape": (max_tokens, model.cfg.bottleneck), "split_shape": (max_tokens, model.dim)})


def coded_bytes(representation: RepresentationSpec, symbols: list[np.ndarray]) -> float:
    """Mean payload bytes of one text with the bundle's codec, each text coded alone."""
    codecs: dict[int, Codec] = {}
    sizes = []
    for sample in symbols:
        tokens = sample.shape[1]
        if tokens not in codecs:
            codecs[tokens] = codec_for(representation.with_tokens(tokens))
        sizes.append(len(codecs[tokens].encode(sample)))
    return float(np.mean(sizes))


def export_text_bundle(
    result: FitResult,
    encoder: LoadedEncoder,
    train_data: TextDataset,
    out: str | Path,
    name: str = "text",
    version: int = 1,
    codec: str = DEFAULT_CODEC,
    training: dict[str, float | int | str] | None = None,
) -> Manifest:
    """Write a complete text bundle directory and return its manifest."""
    model = result.model
    bundle_dir = Path(out)
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    graphs = export_split(result)
    graphs.write(bundle_dir)
    tokenizer = encoder.tokenize.json().encode("utf-8")
    (bundle_dir / TOKENIZER_FILE).write_bytes(tokenizer)

    symbols = text_symbols(model, encoder, train_data.texts[:2000])
    counts = _counts(symbols, model.cfg.bottleneck, model.compressor.levels)
    max_tokens = encoder.tokenize.max_tokens
    representation = _representation(model, counts, codec, max_tokens)
    text = TextInputSpec(kind="text", tokenizer=TOKENIZER_FILE, max_tokens=max_tokens, pad_id=0)
    infos = {t.name: t for t in train_data.tasks}
    tokens = float(np.mean([s.shape[1] for s in symbols]))
    facts: dict[str, float | int | str] = {
        "data": train_data.name,
        "encoder": encoder.spec,
        "split": model.cfg.split,
        "bits": model.cfg.bits,
        "objective": "distill+rate",
        "train_seconds": round(result.seconds, 1),
        "tokens_per_text": round(tokens, 2),
        "coded_bytes_per_sample": round(coded_bytes(representation, symbols[:256]), 1),
        "float32_bytes_at_split": round(tokens * model.dim * 4, 1),
    }
    facts.update({f"encoder_file:{k}": v[:16] for k, v in encoder.files.items()})
    facts.update(training or {})
    manifest = Manifest(
        name=name,
        version=version,
        device_fingerprint=device_fingerprint(graphs.device, representation, text, tokenizer),
        input=text,
        representation=representation,
        tasks=[head_spec(infos[task], model) for task in model.heads],
        trunk=TrunkSpec(file=TRUNK_FILE, features=model.dim, blocks=encoder.depth - model.cfg.split),
        files=hash_files(bundle_dir),
        training=facts,
    )
    write_manifest(bundle_dir, manifest)
    return manifest
