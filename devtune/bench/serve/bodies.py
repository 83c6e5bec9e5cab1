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

    msgpack: list[bytes]  # PredictRequest for /v1/predict, protocol v2 as DeviceClient sends it
    msgpack_v1: list[bytes]  # the same requests in protocol v1, for a server older than v2
    json: list[bytes]  # OIP infer request, symbols as a flat JSON list
    coded_bytes: list[int]  # the codec's bytes of each sample: what the framing is weighed against
    symbols: np.ndarray  # (S, N, C) uint8, for the raw decoder runs


def encode_bodies(bundle: Path, count: int = 32, tasks: Sequence[str] | None = None) -> Bodies:
    """``count`` test images through ``bundle``'s device half, asking for ``tasks`` (None: all)."""
    from device_client import DeviceEncoder
    from models.data import make_shapes
    from shared.protocol import PROTOCOL_VERSION, pack_request

    encoder = DeviceEncoder(bundle)
    images = make_shapes("test", count=count, seed=1).images
    encoded = [encoder.encode([image]) for image in images]
    outputs = {"outputs": [{"name": t} for t in tasks]} if tasks is not None else {}
    json_bodies = [
        json.dumps({
            "inputs": [{"name": "representation", "datatype": "UINT8", "shape": list(e.symbols.shape),
                        "data": e.symbols.ravel().tolist()}],
            **outputs,
        }).encode()
        for e in encoded
    ]
    return Bodies(
        msgpack=[pack_request(encoder.request(e, tasks, protocol=PROTOCOL_VERSION)) for e in encoded],
        msgpack_v1=[pack_request(encoder.request(e, tasks, protocol=1)) for e in encoded],
        json=json_bodies,
        coded_bytes=[len(e.payload) for e in encoded],
        symbols=np.concatenate([e.symbols for e in encoded]),
    )
