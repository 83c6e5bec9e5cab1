"""The manifest's text input and cloud trunk: image bundles read and hash as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.bundle import manifest_json, read_manifest, write_manifest
from shared.errors import ProtocolError
from shared.manifest import (
    Manifest,
    QuantSpec,
    RepresentationSpec,
    TaskSpec,
    TextInputSpec,
    TrunkSpec,
    device_fingerprint,
)

REP = RepresentationSpec(shape=(32, 4), quant=QuantSpec(bits=8, scale=1 / 255, zero_point=0), codec="raw-uint8",
                         split_shape=(32, 24))
TEXT = TextInputSpec(kind="text", max_tokens=32, pad_id=0)


def text_manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "name": "words", "version": 1, "device_fingerprint": "a" * 64, "input": TEXT, "representation": REP,
        "tasks": [TaskSpec(name="topic", kind="classification", classes=["a", "b"], output_shape=(2,),
                           metric="accuracy", higher_is_better=True, file="cloud/topic.onnx", source="trunk")],
        "trunk": TrunkSpec(features=24, blocks=2), "files": {},
    }
    fields.update(changes)
    return Manifest.model_validate(fields)


def test_an_image_manifest_is_written_as_before(tiny_bundle: Path, tmp_path: Path) -> None:
    raw = json.loads((tiny_bundle / "manifest.json").read_text())
    manifest = read_manifest(tiny_bundle)
    assert manifest.text_input is None and manifest.trunk is None and manifest.input.shape[0] == 3
    written = manifest_json(manifest)
    assert written == raw and "trunk" not in written and all("source" not in t for t in written["tasks"])
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest


def test_a_text_manifest_round_trips_and_refuses_image_use(tmp_path: Path) -> None:
    manifest = text_manifest()
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path)
    assert again == manifest and again.text_input == TEXT and again.is_text
    assert json.loads((tmp_path / "manifest.json").read_text())["input"]["kind"] == "text"
    with pytest.raises(ProtocolError, match="takes text, not images"):
        _ = again.input


def test_text_tasks_must_sit_on_a_trunk() -> None:
    task = text_manifest().tasks[0]
    with pytest.raises(ValidationError, match="sit on a trunk but the manifest names none"):
        text_manifest(trunk=None)
    with pytest.raises(ValidationError, match="text bundle's tasks sit on its trunk"):
        text_manifest(tasks=[task.model_copy(update={"source": "representation"})])


def test_the_fingerprint_covers_the_tokenizer_and_its_settings() -> None:
    image = device_fingerprint(b"graph", REP)
    text = device_fingerprint(b"graph", REP, TEXT, b'{"model": 1}')
    assert image != text
    assert text != device_fingerprint(b"graph", REP, TEXT, b'{"model": 2}')
    assert text != device_fingerprint(b"graph", REP, TEXT.model_copy(update={"max_tokens": 16}), b'{"model": 1}')
    with pytest.raises(ValueError, match="needs both"):
        device_fingerprint(b"graph", REP, TEXT)
