"""The device path runs without torch or fastapi, and the CLI answers --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from device_client import DeviceClient, DeviceEncoder
from models.data import make_shapes
encoder = DeviceEncoder(sys.argv[1])
encoded = encoder.encode(list(make_shapes("test", count=2).images))
assert encoded.symbols.shape[0] == 2 and encoded.payload
heavy = sorted(m for m in ("torch", "fastapi", "uvicorn", "starlette") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_device_path_imports_neither_torch_nor_fastapi(tiny_bundle: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tiny_bundle)], capture_output=True, text=True,
                          check=True)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_predict_help_without_heavy_imports() -> None:
    probe = (
        "import sys; from devtune.cli import main\n"
        "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'fastapi') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "--bundle" in done.stdout and "--server" in done.stdout
    assert "HEAVY []" in done.stdout


def test_every_subcommand_has_help() -> None:
    for command in ("demo", "train", "serve", "predict"):
        done = subprocess.run([sys.executable, "-m", "devtune", command, "--help"], capture_output=True,
                              text=True, check=True)
        assert "usage: devtune" in done.stdout, command


TEXT_PROBE = """
import sys
from device_client import DeviceEncoder
encoder = DeviceEncoder(sys.argv[1])
encoded = encoder.encode_text("Yesterday the three pizzas were great.")
assert encoded.symbols.shape[0] == 1 and encoded.payload
heavy = sorted(m for m in ("torch", "transformers", "fastapi", "uvicorn") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_text_device_path_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    from models.pretrained.pipeline import TextTrainConfig, train_text_bundle

    bundle = tmp_path / "text"
    train_text_bundle(bundle, TextTrainConfig(encoder="tests.test_byom:user_model", split=1, steps=2, epochs=1,
                                              bottleneck=4, head_dim=8, train_texts=64))
    done = subprocess.run([sys.executable, "-c", TEXT_PROBE, str(bundle)], capture_output=True, text=True,
                          check=True)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
