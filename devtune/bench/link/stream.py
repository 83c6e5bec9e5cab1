"""The device side of `devtune bench link`: one client per mode, sending test images one request at a time.

Run in the link's device namespace as ``python -m devtune.bench.link.stream --server URL
--bundle DIR --images FILE.npy --quality Q``: it opens one ``DeviceClient`` per bench mode
(``MODES``), then answers commands, one JSON line each way::

    stdin   {"mode": "split", "first": 10, "count": 5, "timed": true}
    stdout  {"mode": "split", "latency_ms": [...], "seconds": ..., "body_up": ..., ...}

so that the benchmark can interleave the modes in short rounds (a load spike on the shared
machine then hits every mode alike) and read the link's counters around each round. Each
sample is timed end to end on the device: from the image in memory to the parsed
predictions, encoding (or PNG/JPEG) included. Every answer also carries the bytes of the
HTTP bodies and headers sent and received (to set against the link's counters), the path
each sample took, and the classification predictions (for accuracy). ``stream`` does the
same in-process for one mode (the JPEG quality match, on loopback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from device_client import DeviceClient, DeviceEncoder, LocalDecoders, Mode
from shared.images import ImageFormat
from shared.protocol import Classification

__all__ = ["MODES", "ModeClient", "StreamResult", "main", "stream"]

MODES: dict[str, tuple[Mode, ImageFormat]] = {
    "split": ("split", "PNG"),
    "cloud-png": ("cloud", "PNG"),
    "cloud-jpeg": ("cloud", "JPEG"),
    "device": ("device", "PNG"),
    "auto": ("auto", "PNG"),
}
"""Bench mode -> the client's mode and cloud-only image format (JPEG at the matched quality)."""


@dataclass
class StreamResult:
    mode: str
    latency_ms: list[float] = field(default_factory=list)  # per timed sample, end to end on the device
    seconds: float = 0.0  # wall time of the timed samples
    requests: int = 0  # HTTP requests sent, untimed ones included
    body_up: int = 0  # HTTP request bodies, untimed ones included
    body_down: int = 0  # HTTP response bodies
    headers_up: int = 0  # HTTP request line + headers
    headers_down: int = 0  # HTTP status line + headers
    chosen: list[str] = field(default_factory=list)  # the path of each timed sample, in order
    predictions: dict[str, list[int]] = field(default_factory=dict)  # classification index per timed sample
    link_estimate: dict[str, float | None] | None = None  # auto: what it infers of the link, now
    warmup_ms: list[float] = field(default_factory=list)  # the untimed samples' latency, apart

    @property
    def fps(self) -> float:
        return round(len(self.latency_ms) / self.seconds, 2) if self.seconds else 0.0

    @property
    def paths(self) -> dict[str, int]:
        return {path: self.chosen.count(path) for path in sorted(set(self.chosen))}

    def extend(self, other: StreamResult) -> None:
        """Add ``other``'s samples and bytes (a later round of the same mode) to these."""
        self.latency_ms += other.latency_ms
        self.seconds += other.seconds
        for name in ("requests", "body_up", "body_down", "headers_up", "headers_down"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.chosen += other.chosen
        self.warmup_ms += other.warmup_ms
        for task, index in other.predictions.items():
            self.predictions.setdefault(task, []).extend(index)
        self.link_estimate = other.link_estimate


def _header_bytes(lines: list[tuple[bytes, bytes]], first_line: int) -> int:
    return first_line + sum(len(k) + len(v) + 4 for k, v in lines) + 2  # "k: v\r\n", blank line


class ModeClient:
    """One bench mode's device client, counting what it sends.

    ``threads``: ONNX Runtime threads for the device's sessions. 1 by default: the emulated
    device and cloud share this machine's cores, and ONNX Runtime's default (a spinning
    thread per core, per session) on the device side slowed the server and the relay and,
    after a device-only request, the next split request's own encoder (1.9 -> 23 ms
    measured), which made auto's probes of split look 2-3x slower than split is.
    """

    def __init__(self, server: str, bundle: str | Path, mode: str, quality: int = 75, threads: int = 1) -> None:
        client_mode, image_format = MODES[mode]
        self.mode = mode
        self._counted = StreamResult(mode)
        encoder = DeviceEncoder(bundle, threads=threads)
        self.client = DeviceClient(encoder, server, mode=client_mode, image_format=image_format,
                                   jpeg_quality=quality)
        if self.client.decoders is not None:  # DeviceClient takes no threads for the decoders it loads
            self.client.decoders = LocalDecoders(encoder.bundle_dir, encoder.manifest, threads=threads)
        self.client.http.event_hooks["response"] = [self._count]

    def _count(self, response: httpx.Response) -> None:
        request, counted = response.request, self._counted
        counted.requests += 1
        counted.headers_up += _header_bytes(request.headers.raw, len(request.method) + len(request.url.raw_path)
                                            + len(" HTTP/1.1\r\n") + 1)
        counted.headers_down += _header_bytes(response.headers.raw, len("HTTP/1.1 200 OK\r\n"))
        counted.body_up += len(request.content)
        counted.body_down += int(response.headers.get("content-length", 0))

    def send(self, images: np.ndarray, timed: bool = True) -> StreamResult:
        """Send ``images`` one request each; untimed ones (warm-up) are kept apart from the samples."""
        self._counted = result = StreamResult(self.mode)
        started = time.perf_counter()
        for image in images:
            t0 = time.perf_counter()
            answer = self.client.predict([image])
            elapsed = round((time.perf_counter() - t0) * 1000, 3)
            if not timed:
                result.warmup_ms.append(elapsed)
                continue
            result.latency_ms.append(elapsed)
            result.chosen.append(answer.path)
            for task, preds in answer.response.predictions.items():
                if isinstance(preds[0], Classification):
                    result.predictions.setdefault(task, []).append(preds[0].index)
        if timed:
            result.seconds = time.perf_counter() - started
        chooser = self.client.chooser
        estimate = chooser.link_estimate() if chooser is not None else None
        result.link_estimate = asdict(estimate) if estimate is not None else None
        return result

    def close(self) -> None:
        self.client.close()


def stream(server: str, bundle: str | Path, images: np.ndarray, mode: str, quality: int = 75,
           warmup: int = 2, threads: int = 1) -> StreamResult:
    """Send ``images`` one by one along bench ``mode`` after ``warmup`` untimed requests."""
    client = ModeClient(server, bundle, mode, quality, threads)
    try:
        result = client.send(images[np.arange(warmup) % len(images)], timed=False)
        result.extend(client.send(images))
        return result
    finally:
        client.close()


def to_line(result: StreamResult) -> str:
    return json.dumps({**asdict(result), "fps": result.fps, "paths": result.paths})


def from_line(line: str) -> StreamResult:
    fields: dict[str, Any] = json.loads(line)
    fields.pop("fps")
    fields.pop("paths")
    return StreamResult(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtune.bench.link.stream", description=__doc__)
    parser.add_argument("--server", required=True, help="the server's URL as the device sees it")
    parser.add_argument("--bundle", required=True, help="the bundle directory on the device")
    parser.add_argument("--images", required=True, help=".npy of (B, H, W, 3) uint8 test images")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality for cloud-jpeg")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per device session")
    args = parser.parse_args(argv)
    images = np.load(args.images)
    clients = {mode: ModeClient(args.server, args.bundle, mode, args.quality, args.threads) for mode in MODES}
    try:
        for line in sys.stdin:
            command = json.loads(line)
            first, count = int(command["first"]), int(command["count"])
            picked = images[np.arange(first, first + count) % len(images)]
            result = clients[command["mode"]].send(picked, timed=bool(command.get("timed", True)))
            sys.stdout.write(to_line(result) + "\n")
            sys.stdout.flush()
    finally:
        for client in clients.values():
            client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
