"""`devtune demo`: the whole path on the built-in default, measured.

Trains the default bundle unless it is cached, starts the real server on a free port,
sends every test sample through the device client over HTTP, stops the server, and
compares the metrics that came back with the same model run locally in float32.

stdout holds the result only (a table, or with ``--json`` one JSON object); stderr gets
one log line per stage, and a progress bar when it is a terminal.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from shared.bundle import MANIFEST_FILE, read_manifest

__all__ = ["run_demo"]

log = logging.getLogger("devtune")


def _p50(values: list[float]) -> float:
    return round(float(np.median(values)), 3) if values else 0.0


def _png_bytes(images: np.ndarray) -> float:
    from PIL import Image

    sizes = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        sizes.append(buffer.tell())
    return float(np.mean(sizes))


def run_demo(bundle: Path, samples: int | None = None, as_json: bool = False, retrain: bool = False,
             verbose: bool = False) -> int:
    """The demo; ``verbose`` also lets the server log at INFO (it logs warnings only otherwise)."""
    from device_client import DeviceClient
    from devtune.pipeline import train_bundle
    from devtune.server_process import ServerProcess
    from models.data import make_shapes
    from models.export import load_checkpoint
    from models.metrics import metric
    from models.progress import progress
    from models.train import evaluate
    from shared.protocol import Classification, Dense, Regression

    started = time.perf_counter()
    if retrain or not (bundle / MANIFEST_FILE).is_file():
        log.info("no bundle at %s: training the default one (about 6 minutes on 2 cores)", bundle)
        train_bundle(bundle, progress=not as_json)
    else:
        log.info("reusing the bundle at %s (--retrain to train again)", bundle)
    manifest = read_manifest(bundle)
    test = make_shapes("test", count=samples)

    collected: dict[str, list[object]] = {t: [] for t in manifest.default_tasks}
    payload, coded, device_ms, server_ms, total_ms = [], [], [], [], []
    # the server logs warnings only, unless -v asks for its INFO lines too
    if verbose:
        process = ServerProcess(bundle, auth="off", log_level="info")
    else:
        process = ServerProcess(bundle, auth="off")
    with process as server, DeviceClient(bundle, server.url) as client:
        log.info("server ready at %s; sending %d test samples one by one", server.url, len(test))
        sent = time.perf_counter()
        for image in progress(test.images, "http", unit="sample"):
            t0 = time.perf_counter()
            encoded = client.encoder.encode([image])  # what DeviceClient.predict does, keeping the payload
            result = client.send(encoded)
            total_ms.append((time.perf_counter() - t0) * 1000)
            coded.append(len(encoded.payload))
            device_ms.append(result.encode_ms)
            server_ms.append(result.response.timing.total_ms)
            payload.append(result.payload_bytes)
            for task, preds in result.response.predictions.items():
                collected[task].append(preds[0])

    log.info("%d answers in %.1f s; running the same model locally in float32 for reference",
             len(total_ms), time.perf_counter() - sent)
    local = evaluate(load_checkpoint(bundle), test, quantize=False)
    tasks = {}
    for spec in (t for t in manifest.tasks if t.default):  # what a request naming no task gets
        preds = collected[spec.name]
        if spec.kind == "classification":
            predicted = np.array([p.index for p in preds if isinstance(p, Classification)])
        elif spec.kind == "regression":
            predicted = np.array([p.values for p in preds if isinstance(p, Regression)])
        else:
            predicted = np.stack(
                [np.frombuffer(p.data, np.uint8).reshape(p.shape) for p in preds if isinstance(p, Dense)]
            )
        tasks[spec.name] = {
            "kind": spec.kind,
            "metric": spec.metric,
            "higher_is_better": spec.higher_is_better,
            "http": round(metric(spec.kind, predicted, test.labels[spec.name]), 4),
            "local": round(local[spec.name], 4),
        }
    n, d = manifest.representation.split_shape
    report = {
        "bundle": {
            "name": manifest.name,
            "version": manifest.version,
            "fingerprint": manifest.device_fingerprint,
            "codec": manifest.representation.codec,
            "bits": manifest.representation.quant.bits,
        },
        "samples": len(test),
        "tasks": tasks,
        "bytes_per_sample": {
            "payload": round(float(np.mean(payload)), 1),
            "representation": round(float(np.mean(coded)), 1),
            "float32_representation": n * d * 4,
            "raw_input": int(np.prod(test.images.shape[1:])),
            "png_input": round(_png_bytes(test.images), 1),
        },
        "latency_ms": {
            "device_p50": _p50(device_ms),
            "server_p50": _p50(server_ms),
            "total_p50": _p50(total_ms),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


def _print_table(report: dict[str, object]) -> None:
    out = sys.stdout
    bundle = report["bundle"]
    assert isinstance(bundle, dict)
    print(f"\nDevice Tuning demo: {report['samples']} test samples over HTTP "
          f"({bundle['codec']}, {bundle['bits']}-bit)\n", file=out)
    print(f"{'task':<10}{'kind':<16}{'metric':<10}{'http':>8}{'local f32':>11}", file=out)
    tasks = report["tasks"]
    assert isinstance(tasks, dict)
    for name, row in tasks.items():
        line = f"{name:<10}{row['kind']:<16}{row['metric']:<10}{row['http']:>8.4f}{row['local']:>11.4f}"
        print(line, file=out)
    sizes = report["bytes_per_sample"]
    assert isinstance(sizes, dict)
    print("\nbytes per sample:", file=out)
    for key, value in sizes.items():
        print(f"  {key:<24}{value:>10}", file=out)
    print(f"\nlatency p50 (ms): {report['latency_ms']}", file=out)
    print(f"finished in {report['seconds']} s", file=out)
