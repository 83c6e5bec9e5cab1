"""Load a pre-trained encoder that can be cut between its blocks.

An encoder SPEC is one of

- ``minilm``: the built-in all-MiniLM-L6-v2 (see :mod:`models.pretrained.minilm`);
- a local Hugging Face directory holding a BERT-like model (``config.json``, weights,
  ``tokenizer.json``): embeddings, then ``encoder.layer[i]``; loaded with
  ``local_files_only=True``, so nothing is downloaded;
- ``package.module:factory``: a callable that returns an ``nn.Module`` with the contract
  below (the *block contract*).

The block contract, what every loaded encoder offers::

    embed(input_ids (B,T) int64) -> h (B,T,D) float32
    blocks: nn.ModuleList          # block(h (B,T,D), mask (B,T) float 1=token 0=pad) -> (B,T,D);
                                   # a block whose forward takes one argument gets h alone
    tokenizer: str | Path          # optional: a tokenizer.json (the device runs it with the
                                   # `tokenizers` library); without it: UTF-8 bytes + 3

The model can be cut before any block: split N puts ``embed`` and ``blocks[:N]`` on the
device, ``blocks[N:]`` in the cloud.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from models.pretrained.minilm import MINILM, minilm_dir, sha256_file
from models.pretrained.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer
from shared.errors import ConfigError

__all__ = ["ByteTokenizer", "HFTokenizer", "LoadedEncoder", "Tokenizer", "load_encoder"]


@dataclass
class LoadedEncoder:
    """A module under the block contract, with how to tokenize for it and where it came from."""

    spec: str
    module: nn.Module  # embed() and blocks, as the module docstring says
    tokenize: Tokenizer
    dim: int  # D of every block's output
    files: dict[str, str] = field(default_factory=dict)  # file loaded -> sha256, for the bundle to record
    fresh: Callable[[], nn.Module] | None = None  # the same architecture at random init (from-scratch runs)

    @property
    def depth(self) -> int:
        return len(self.module.blocks)  # type: ignore[arg-type]


class _HFBlock(nn.Module):
    """One ``BertLayer`` under the block contract: the 0/1 mask becomes BERT's additive bias."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(h.dtype).min  # (B, 1, 1, T)
        out = self.layer(h, attention_mask=bias)
        return out[0] if isinstance(out, tuple) else out


class _HFEncoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.embeddings = model.embeddings
        self.blocks = nn.ModuleList(_HFBlock(layer) for layer in model.encoder.layer)  # type: ignore[union-attr]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))  # (B, T, D)


def _load_hf(folder: Path, spec: str, files: dict[str, str] | None, max_tokens: int) -> LoadedEncoder:
    try:
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ConfigError("a Hugging Face encoder needs transformers: "
                          "pip install 'device-tuning[pretrained]'") from exc
    if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"{folder} is not a Hugging Face model directory: it needs config.json, "
                          "the weights and tokenizer.json")
    hf_logging.disable_progress_bar()  # library code draws no bars
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    config._attn_implementation = "eager"  # plain matmul + softmax: exports to ONNX opset 17
    model = AutoModel.from_pretrained(folder, config=config, local_files_only=True)
    if not hasattr(model, "embeddings") or not hasattr(getattr(model, "encoder", None), "layer"):
        raise ConfigError(f"{folder} holds a {type(model).__name__}, not a BERT-like model "
                          "(embeddings + encoder.layer); wrap it in a module:factory")
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    recorded = files or {p.name: sha256_file(p) for p in [folder / "config.json", folder / "tokenizer.json", *weights]}

    def fresh() -> nn.Module:
        return _HFEncoder(AutoModel.from_config(config))

    return LoadedEncoder(spec, _HFEncoder(model), HFTokenizer.from_file(folder / "tokenizer.json", max_tokens),
                         config.hidden_size, recorded, fresh)


def _load_factory(spec: str, max_tokens: int) -> LoadedEncoder:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:  # as uvicorn does: `devtune` (an installed
        sys.path.insert(0, os.getcwd())  # script) finds modules in the directory it runs in, like python -m
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"encoder {spec!r}: cannot import {attr!r} from {module_name!r} ({exc}); "
                          "give package.module:factory importable from here") from exc
    module = factory()
    blocks = getattr(module, "blocks", None)
    if not isinstance(module, nn.Module) or not callable(getattr(module, "embed", None)) \
            or not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or not len(blocks):
        raise ConfigError(f"encoder {spec!r}: the factory returned {type(module).__name__}; it must return an "
                          "nn.Module with embed(input_ids) -> (B,T,D) and a non-empty nn.ModuleList `blocks`")
    if isinstance(blocks, nn.Sequential):
        module.blocks = nn.ModuleList(blocks)
    tokenizer_file = getattr(module, "tokenizer", None)
    if tokenizer_file is not None and not Path(tokenizer_file).is_file():
        raise ConfigError(f"encoder {spec!r}: its tokenizer {tokenizer_file!r} is not a file; point it at a "
                          "tokenizer.json or leave it out for UTF-8 bytes")
    tokenize: Tokenizer = (HFTokenizer.from_file(Path(tokenizer_file), max_tokens) if tokenizer_file
                           else ByteTokenizer(max_tokens))
    dim = _probe(spec, module, tokenize)
    return LoadedEncoder(spec, module, tokenize, dim, {}, factory)


def run_block(block: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Call a block under the contract: (h, mask), or h alone if its forward takes one argument."""
    if len(inspect.signature(block.forward).parameters) == 1:
        return block(h)  # type: ignore[no-any-return]
    return block(h, mask)  # type: ignore[no-any-return]


@torch.no_grad()
def _probe(spec: str, module: nn.Module, tokenize: Tokenizer) -> int:
    """Run two short texts through every block; the width D, or ConfigError naming the bad stage."""
    ids, mask = (torch.from_numpy(a) for a in tokenize(["a probe", "a longer probe text"]))
    shape = tuple(ids.shape)
    h = module.embed(ids)  # type: ignore[operator]
    if not isinstance(h, torch.Tensor) or h.dim() != 3 or tuple(h.shape[:2]) != shape:
        got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ConfigError(f"encoder {spec!r}: embed() returned {got} for input_ids {shape}; "
                          f"the compressor takes (B, T, D) = ({shape[0]}, {shape[1]}, D)")
    for i, block in enumerate(module.blocks):  # type: ignore[arg-type]
        out = run_block(block, h, mask.float())
        if not isinstance(out, torch.Tensor) or out.shape != h.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"encoder {spec!r}: block {i} returned {got} for input {tuple(h.shape)}; "
                              "every block must keep (B, T, D) so the model can be cut after it")
        h = out
    return int(h.shape[-1])


def load_encoder(spec: str, max_tokens: int = 64, cache: str | Path | None = None) -> LoadedEncoder:
    """The encoder a SPEC names (see the module docstring), in eval mode.

    ``max_tokens``: texts are truncated to this many tokens; ``cache``: where ``minilm`` is extracted."""
    if spec == MINILM:
        from models.pretrained.minilm import MINILM_FILES

        folder = minilm_dir(cache)
        loaded = _load_hf(folder, spec, dict(MINILM_FILES), max_tokens)
    elif Path(spec).is_dir():
        loaded = _load_hf(Path(spec), spec, None, max_tokens)
    elif ":" in spec and not Path(spec).exists():
        loaded = _load_factory(spec, max_tokens)
    else:
        raise ConfigError(f"encoder {spec!r} is neither 'minilm', a local Hugging Face directory, "
                          "nor package.module:factory")
    loaded.module.eval()
    return loaded
