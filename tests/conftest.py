"""Shared fixtures: a tiny bundle trained once per session, and a real server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before torch is imported: spinning OpenMP workers starve the server processes tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train_tiny_bundle(out: Path, name: str, count: int = 512, epochs: int = 1, preview: int = 0,
                      distortion: float = 0.0) -> Path:
    """A small but real bundle at ``out``: a narrow model trained briefly, exported to ONNX, rans codec
    (``preview``/``distortion``: the rd objective's thumbnail decoder and its weight)."""
    import torch

    from models.data import make_shapes
    from models.export import export_bundle
    from models.model import ModelConfig
    from models.train import TrainConfig, train

    torch.manual_seed(0)
    data = make_shapes("train", count=count)
    cfg = ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32, bits=4, preview=preview)
    result = train(cfg, TrainConfig(epochs=epochs, batch_size=64, distortion=distortion), data, progress=False)
    export_bundle(result, data, out, name=name, training={"distortion": distortion} if distortion else None)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small but real bundle: trained for one short epoch, exported to ONNX, rans codec."""
    return train_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", "tiny")


@pytest.fixture(scope="session")
def server(tiny_bundle: Path) -> Iterator[str]:
    """The real cloud server (uvicorn, own process) serving the tiny bundle."""
    from devtune.server_process import ServerProcess

    with ServerProcess(tiny_bundle, auth="off", max_body_bytes=64 * 1024) as process:
        yield process.url
