"""The public surface is curated: every name in __all__ exists, and the typed packages pass mypy --strict."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = [
    "shared.errors", "shared.manifest", "shared.bundle", "shared.protocol", "shared.quantization",
    "shared.predictions", "shared.codecs", "shared.codecs.base", "shared.entropy", "device_client",
    "cloud_server.app", "cloud_server.settings", "cloud_server.dataplane", "cloud_server.batcher",
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert not missing, f"{name}.__all__ names missing symbols: {missing}"


def test_shared_imports_nothing_else_of_the_project() -> None:
    for path in (ROOT / "shared").rglob("*.py"):
        text = path.read_text()
        for other in ("device_client", "cloud_server", "models", "devtune", "torch", "fastapi"):
            assert f"import {other}" not in text and f"from {other}" not in text, (path, other)


def test_serving_path_never_imports_torch() -> None:
    for package in ("device_client", "cloud_server"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "import torch" not in text and "from models" not in text, path


def test_mypy_strict_on_the_serving_path() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "shared", "device_client", "cloud_server"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
