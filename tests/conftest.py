"""Shared fixtures: a tiny bundle trained once per session, and a real server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before torch is imported: spinning OpenMP workers starve the server processes tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small but real bundle: trained for one short epoch, exported to ONNX, rans codec."""
    import torch

    from models.data import make_shapes
    from models.export import export_bundle
    from models.model import ModelConfig
    from models.train import TrainConfig, train

    torch.manual_seed(0)
    data = make_shapes("train", count=512)
    cfg = ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32, bits=4)
    result = train(cfg, TrainConfig(epochs=1, batch_size=64), data, progress=False)
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    export_bundle(result, data, out, name="tiny")
    return out


@pytest.fixture(scope="session")
def server(tiny_bundle: Path) -> Iterator[str]:
    """The real cloud server (uvicorn, own process) serving the tiny bundle."""
    from devtune.server_process import ServerProcess

    with ServerProcess(tiny_bundle, auth="off", max_body_bytes=64 * 1024) as process:
        yield process.url
