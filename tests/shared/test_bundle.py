"""Bundles: each side loads its half only, and refuses a file whose sha256 does not match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cloud_server.runtime import CloudBundle
from device_client import DeviceEncoder
from shared.bundle import read_manifest
from shared.errors import BundleError, IntegrityError


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "copy"))


def test_device_refuses_a_changed_encoder(bundle_copy: Path) -> None:
    with (bundle_copy / "device" / "encoder.onnx").open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(IntegrityError, match="device/encoder.onnx has sha256"):
        DeviceEncoder(bundle_copy)


def test_cloud_refuses_a_changed_decoder(bundle_copy: Path) -> None:
    with (bundle_copy / "cloud" / "shape.onnx").open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(IntegrityError, match="cloud/shape.onnx"):
        CloudBundle(bundle_copy)


def test_each_side_loads_only_its_half(bundle_copy: Path) -> None:
    shutil.rmtree(bundle_copy / "cloud")
    DeviceEncoder(bundle_copy)  # no cloud/ needed on a device
    shutil.rmtree(bundle_copy / "device")
    with pytest.raises(BundleError, match="device/encoder.onnx is missing"):
        DeviceEncoder(bundle_copy)


def test_invalid_manifest_is_explained(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["representation"]["quant"]["bits"] = 5
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="(?s)not a valid manifest.*bits"):
        read_manifest(bundle_copy)


def test_missing_bundle_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="devtune train"):
        read_manifest(tmp_path)
