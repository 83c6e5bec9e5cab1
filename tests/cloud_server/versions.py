"""Versions of the tiny bundle for fleet and fault tests, made in seconds without training:
a new version number, optionally an extra task (a copy of one decoder under a new name), a
decoder that fails its sha256, or another device fingerprint."""

from __future__ import annotations

import io
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from shared.bundle import hash_files, read_manifest, write_manifest

T = TypeVar("T")


def make_version(
    bundle: Path, out: Path, version: int, *, extra_task: str | None = None,
    tamper: bool = False, fingerprint: str | None = None, name: str | None = None,
) -> Path:
    """A copy of ``bundle`` as ``version`` at ``out``; see the module docstring for the options."""
    shutil.copytree(bundle, out)
    manifest = read_manifest(out)
    tasks = list(manifest.tasks)
    if extra_task is not None:
        source = tasks[0]
        shutil.copyfile(out / source.file, out / "cloud" / f"{extra_task}.onnx")
        tasks.append(source.model_copy(update={"name": extra_task, "file": f"cloud/{extra_task}.onnx"}))
    update: dict[str, object] = {"version": version, "tasks": tasks, "files": hash_files(out)}
    if fingerprint is not None:
        update["device_fingerprint"] = fingerprint
    if name is not None:
        update["name"] = name
    write_manifest(out, manifest.model_copy(update=update))
    if tamper:  # listed in the manifest with another sha256
        decoder = out / tasks[0].file
        decoder.write_bytes(decoder.read_bytes() + b"\0")
    return out


def served_versions(url: str) -> list[int]:
    """The versions a server lists under GET /v1/bundles (auth off), oldest first."""
    return sorted(b["version"] for b in httpx.get(f"{url}/v1/bundles", timeout=5).json())


def served_tasks(url: str, version: int) -> list[str]:
    listed = httpx.get(f"{url}/v1/bundles", timeout=5).json()
    return [t["name"] for b in listed if b["version"] == version for t in b["tasks"]]


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> float:
    """Seconds until ``condition()`` is true; fails with ``what`` after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


def tar_gz(bundle: Path) -> bytes:
    """``bundle`` as the .tar.gz an upload to /admin/models/load sends."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle, arcname="bundle")
    return buffer.getvalue()
