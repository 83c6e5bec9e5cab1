"""The public surface is curated: every name in __all__ exists, and the typed packages pass mypy --strict.

(Which package may import which is checked on the import graph, in tests/test_imports.py.)"""

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
    "models.dataset", "models.data", "models.userdata", "models.progress", "models.metrics", "models.model",
    "models.train", "models.export", "models.tune", "devtune.cli", "devtune.tuning_cli",
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert not missing, f"{name}.__all__ names missing symbols: {missing}"


def test_mypy_strict_on_the_serving_path() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "shared", "device_client", "cloud_server"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
