"""The device side of `devtune bench link`: send test images one request at a time, print JSON timings.

Run in the link's device namespace (``Link.run_json("device", [python, -m, devtune.bench.link.stream,
...])``) or in-process (``stream``). Each sample is timed end to end on the device: from the
image in memory to the parsed predictions, encoding (or PNG/JPEG) included. The last line of
stdout is one JSON object: latencies, frames per second, the bytes of every HTTP body and
header it sent and received (warm-up included, to set against the link's counters), the
path each sample took, and the classification predictions (for accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from device_client import DeviceClient, Mode
from shared.protocol import Classification

__all__ = ["StreamResult", "main", "stream"]


@dataclass
class StreamResult:
    mode: str
    latency_ms: list[float]  # per measured sample, end to end on the device
    seconds: float  # wall time of the measured samples, back to back
    fps: float
    requests: int  # HTTP requests sent, warm-up included
    body_up: int  # HTTP request bodies, warm-up included
    body_down: int  # HTTP response bodies
    headers_up: int  # HTTP request line + headers
    headers_down: int  # HTTP status line + headers
    paths: dict[str, int] = field(default_factory=dict)  # measured samples per path taken
    predictions: dict[str, list[int]] = field(default_factory=dict)  # classification index per sample


def _header_bytes(lines: list[tuple[bytes, bytes]], first_line: int) -> int:
    return first_line + sum(len(k) + len(v) + 4 for k, v in lines) + 2  # "k: v\r\n", blank line


def stream(server: str, bundle: str | Path, images: np.ndarray, mode: Mode, image_format: str = "PNG",
           quality: int = 75, warmup: int = 2) -> StreamResult:
    """Send ``images`` one by one along ``mode`` after ``warmup`` untimed requests."""
    counted = {"requests": 0, "body_up": 0, "body_down": 0, "headers_up": 0, "headers_down": 0}

    def on_response(response: httpx.Response) -> None:
        request = response.request
        counted["requests"] += 1
        counted["headers_up"] += _header_bytes(request.headers.raw, len(request.method) + len(request.url.raw_path)
                                               + len(" HTTP/1.1\r\n") + 1)
        counted["headers_down"] += _header_bytes(response.headers.raw, len("HTTP/1.1 200 OK\r\n"))
        counted["body_up"] += len(request.content)
        counted["body_down"] += int(response.headers.get("content-length", 0))

    client = DeviceClient(bundle, server, mode=mode, image_format=image_format,  # type: ignore[arg-type]
                          jpeg_quality=quality)
    client.http.event_hooks["response"] = [on_response]
    latency: list[float] = []
    paths: dict[str, int] = {}
    predictions: dict[str, list[int]] = {}
    with client:
        for i in range(warmup):
            client.predict([images[i % len(images)]])
        started = time.perf_counter()
        for image in images:
            t0 = time.perf_counter()
            result = client.predict([image])
            latency.append((time.perf_counter() - t0) * 1000)
            paths[result.path] = paths.get(result.path, 0) + 1
            for task, preds in result.response.predictions.items():
                if isinstance(preds[0], Classification):
                    predictions.setdefault(task, []).append(preds[0].index)
        seconds = time.perf_counter() - started
    return StreamResult(mode, [round(v, 3) for v in latency], round(seconds, 4), round(len(images) / seconds, 2),
                        paths=paths, predictions=predictions, **counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtune.bench.link.stream", description=__doc__)
    parser.add_argument("--server", required=True, help="the server's URL as the device sees it")
    parser.add_argument("--bundle", required=True, help="the bundle directory on the device")
    parser.add_argument("--images", required=True, help=".npy of (B, H, W, 3) uint8 test images")
    parser.add_argument("--mode", required=True, choices=["split", "cloud", "device", "auto"])
    parser.add_argument("--format", default="PNG", choices=["PNG", "JPEG"], help="cloud-only image format")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality for cloud-only")
    parser.add_argument("--count", type=int, default=None, help="send only the first COUNT images")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests first")
    args = parser.parse_args(argv)
    images = np.load(args.images)
    if args.count is not None:
        images = images[: args.count]
    result = stream(args.server, args.bundle, images, args.mode, args.format, args.quality, args.warmup)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
