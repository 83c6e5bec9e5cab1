"""Reading and writing bundle directories, with every file checked against its sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import BundleError, IntegrityError
from shared.manifest import Manifest

__all__ = [
    "MANIFEST_FILE", "hash_files", "manifest_json", "read_bytes_checked", "read_manifest", "write_manifest",
]

MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Load and validate ``manifest.json``; say which bundle and what is wrong if it fails."""
    path = Path(bundle_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(
            f"{path} not found: pass a bundle directory made by `devtune train` "
            "(it holds manifest.json, device/ and cloud/)"
        )
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise BundleError(f"{path} is not a valid manifest: {exc}") from exc


def read_bytes_checked(bundle_dir: str | Path, manifest: Manifest, relpath: str) -> bytes:
    """Read one bundle file and refuse it unless its sha256 matches the manifest."""
    expected = manifest.files.get(relpath)
    if expected is None:
        raise BundleError(f"{relpath} is not listed in the manifest of {bundle_dir}; rebuild the bundle")
    path = Path(bundle_dir) / relpath
    if not path.is_file():
        raise BundleError(f"{path} is missing; the bundle is incomplete, copy it again")
    content = path.read_bytes()
    got = hashlib.sha256(content).hexdigest()
    if got != expected:
        raise IntegrityError(
            f"{path} has sha256 {got[:16]}..., the manifest expects {expected[:16]}...: "
            "the file was changed or corrupted; copy the bundle again"
        )
    return content


def hash_files(bundle_dir: str | Path) -> dict[str, str]:
    """sha256 of every file below ``bundle_dir`` except the manifest, keyed by relative path."""
    root = Path(bundle_dir)
    return {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as written: fields added since format 1 (``trunk``, ``TaskSpec.source``) are
    left out where they have their defaults, so an image bundle's manifest reads exactly as it
    did and servers from before them still load it."""
    fields = manifest.model_dump(mode="json")
    if fields.get("trunk") is None:
        fields.pop("trunk", None)
    for task in fields["tasks"]:
        if task.get("source") == "representation":
            del task["source"]
    return fields


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(bundle_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest_json(manifest), indent=2) + "\n")
    return path
