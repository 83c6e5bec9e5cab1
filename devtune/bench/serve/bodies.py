"""What is sent: request bodies from the device encoder, encoded once before any clock starts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Bodies", "encode_bodies"]


@dataclass(frozen=True)
class Bodies:
    """Pre-encoded request bodies, one sample each."""

    msgpack: list[bytes]  # PredictRequest for /v1/predict
    json: list[bytes]  # OIP infer request, symbols as a flat JSON list
    symbols: np.ndarray  # (S, N, C) uint8, for the raw decoder runs


def encode_bodies(bundle: Path, count: int = 32, tasks: Sequence[str] | None = None) -> Bodies:
    """``count`` test images through ``bundle``'s device half, asking for ``tasks`` (None: all)."""
    from device_client import DeviceEncoder
    from models.data import make_shapes
    from shared.protocol import pack_request

    encoder = DeviceEncoder(bundle)
    images = make_shapes("test", count=count, seed=1).images
    encoded = [encoder.encode([image]) for image in images]
    msgpack_bodies = [pack_request(encoder.request(e, tasks)) for e in encoded]
    outputs = {"outputs": [{"name": t} for t in tasks]} if tasks is not None else {}
    json_bodies = [
        json.dumps({
            "inputs": [{"name": "representation", "datatype": "UINT8", "shape": list(e.symbols.shape),
                        "data": e.symbols.ravel().tolist()}],
            **outputs,
        }).encode()
        for e in encoded
    ]
    return Bodies(msgpack_bodies, json_bodies, np.concatenate([e.symbols for e in encoded]))
