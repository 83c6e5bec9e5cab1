"""A request names its device half by the full fingerprint or by a prefix of at least 16 hex
digits (protocol v2 sends the first 8 bytes); an ambiguous prefix is refused with 409."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from cloud_server.dataplane import MIN_FINGERPRINT_PREFIX, DataPlane
from cloud_server.errors import status_for
from cloud_server.settings import CloudSettings
from device_client import DeviceEncoder
from models.data import make_shapes
from shared.bundle import read_manifest
from shared.errors import FingerprintMismatch, ProtocolError


def _twin(bundle: Path, target: Path, fingerprint: str) -> Path:
    """The tiny bundle under another name, claiming another device fingerprint."""
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(name="twin", device_fingerprint=fingerprint)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _plane(*bundles: Path) -> DataPlane:
    """A plane with ``bundles`` loaded, for lookups only: their batchers are stopped again."""

    async def load() -> DataPlane:
        plane = DataPlane(CloudSettings())
        for bundle in bundles:
            await plane.load(bundle)
        for served in plane.models.values():
            await served.batcher.stop()
        return plane

    return asyncio.run(load())


def test_a_full_fingerprint_or_a_prefix_of_16_or_more_hex_digits_names_the_bundle(tiny_bundle: Path) -> None:
    fingerprint = read_manifest(tiny_bundle).device_fingerprint
    plane = _plane(tiny_bundle)
    assert MIN_FINGERPRINT_PREFIX == 16
    for named in (fingerprint, fingerprint[:16], fingerprint[:40]):
        assert plane.for_fingerprint(named).key == ("tiny", 1)
    for malformed in (fingerprint[:15], fingerprint[:15] + "G", fingerprint.upper(), ""):
        with pytest.raises(ProtocolError, match="at least the first 16") as info:
            plane.for_fingerprint(malformed)
        assert status_for(info.value) == 400


def test_an_unknown_prefix_gets_409_with_the_full_fingerprints_loaded(tiny_bundle: Path) -> None:
    fingerprint = read_manifest(tiny_bundle).device_fingerprint
    plane = _plane(tiny_bundle)
    other = "0" * 16 if not fingerprint.startswith("0" * 16) else "f" * 16
    with pytest.raises(FingerprintMismatch) as info:
        plane.for_fingerprint(other)
    assert status_for(info.value) == 409
    assert fingerprint in str(info.value) and info.value.expected == fingerprint and info.value.got == other


def test_a_prefix_that_two_loaded_device_halves_share_is_refused_and_a_longer_one_decides(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    fingerprint = read_manifest(tiny_bundle).device_fingerprint
    flipped = "0" if fingerprint[20] != "0" else "1"
    twin_fingerprint = fingerprint[:20] + flipped + fingerprint[21:]  # the same first 20 digits
    plane = _plane(tiny_bundle, _twin(tiny_bundle, tmp_path / "twin", twin_fingerprint))
    with pytest.raises(FingerprintMismatch, match="more than one loaded device half") as info:
        plane.for_fingerprint(fingerprint[:16])
    assert status_for(info.value) == 409
    assert fingerprint in str(info.value) and twin_fingerprint in str(info.value)
    assert plane.for_fingerprint(fingerprint[:21]).key == ("tiny", 1)
    assert plane.for_fingerprint(twin_fingerprint[:21]).key == ("twin", 1)
    assert plane.for_fingerprint(twin_fingerprint).key == ("twin", 1)


def test_a_request_that_names_its_bundle_by_prefix_is_answered(tiny_bundle: Path) -> None:
    encoder = DeviceEncoder(tiny_bundle)
    request = encoder.request(encoder.encode(list(make_shapes("test", count=2).images)))
    fingerprint = request.bundle
    by_prefix = request.model_copy(update={"bundle": fingerprint[:16]})

    async def predict() -> tuple[str, int]:
        plane = DataPlane(CloudSettings())
        await plane.load(tiny_bundle)
        answer = await plane.predict(by_prefix)
        await plane.close()
        return answer.bundle, len(answer.predictions["shape"])

    assert asyncio.run(predict()) == (fingerprint, 2)  # answered with the full fingerprint
