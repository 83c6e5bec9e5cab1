"""Export: the ONNX graphs compute what the torch model computes, and the bundle is complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.data import make_shapes
from models.export import DecoderGraph, load_checkpoint
from models.train import to_tensor
from shared.bundle import hash_files, read_manifest
from shared.manifest import device_fingerprint


def test_encoder_onnx_matches_torch(tiny_bundle: Path) -> None:
    result = load_checkpoint(tiny_bundle)
    images = make_shapes("val", count=8).images
    x = to_tensor(images)
    with torch.no_grad():
        expected = result.model.device_forward(x).numpy()
    session = ort.InferenceSession(str(tiny_bundle / "device" / "encoder.onnx"))
    (got,) = session.run(None, {"image": x.numpy()})
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


def test_every_decoder_onnx_matches_torch(tiny_bundle: Path) -> None:
    result = load_checkpoint(tiny_bundle)
    manifest = read_manifest(tiny_bundle)
    z = torch.rand(5, *manifest.representation.shape)
    for head in result.heads:
        mean, std = result.targets.get(head.name, (0.0, 1.0))
        with torch.no_grad():
            expected = DecoderGraph(result.model.decoders[head.name], mean, std)(z).numpy()
        session = ort.InferenceSession(str(tiny_bundle / manifest.task(head.name).file))
        (got,) = session.run(None, {"z": z.numpy()})
        assert got.shape == (5, *manifest.task(head.name).output_shape)
        assert np.abs(got - expected).max() < 1e-4, head.name


def test_manifest_records_every_file_and_the_fingerprint(tiny_bundle: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    assert manifest.files == hash_files(tiny_bundle)
    encoder = (tiny_bundle / manifest.encoder_file).read_bytes()
    assert manifest.device_fingerprint == device_fingerprint(encoder, manifest.representation)
    assert manifest.representation.codec == "rans"
    assert {t.kind for t in manifest.tasks} == {"classification", "regression", "dense"}
    assert not {"quadrant", "dots"} & set(manifest.task_names)  # held out for device tuning
