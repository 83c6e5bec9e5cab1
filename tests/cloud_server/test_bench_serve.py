"""`devtune bench serve` end to end on the tiny bundle, and the real server under a burst.

These check behaviour (the report's shape, counts that add up, 503s that say when to
come back); how fast the server is belongs to the benchmark, not to a timed test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_client import DeviceEncoder
from devtune.bench.serve import make_many_task_bundle
from devtune.loadgen import Workload, closed_loop, open_loop
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.bundle import read_bytes_checked, read_manifest
from shared.protocol import CONTENT_TYPE, pack_request

LEVEL_KEYS = {"concurrency", "batching", "encoding", "throughput_rps", "p50_ms", "p90_ms", "p99_ms", "errors",
              "refused_503"}


@pytest.fixture(scope="module")
def bodies(tiny_bundle: Path) -> list[bytes]:
    encoder = DeviceEncoder(tiny_bundle)
    return [pack_request(encoder.request(encoder.encode([image]))) for image in make_shapes("test", count=4).images]


def test_bench_serve_prints_one_json_object_whose_counts_add_up(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench-serve.json"
    command = [
        sys.executable, "-m", "devtune", "bench", "serve", "--json", "--bundle", str(tiny_bundle),
        "--concurrency", "1,4", "--seconds", "0.3", "--max-requests", "300", "--overload-seconds", "0.3",
        "--task-counts", "1,2,4", "--out", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("\n") == 1, done.stdout[:2000]  # exactly one JSON object, nothing else
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report

    levels = report["levels"]
    assert {(r["concurrency"], r["batching"], r["encoding"]) for r in levels} == {
        (c, b, e) for c in (1, 4) for b in (True, False) for e in ("msgpack", "json")
    }
    for row in levels:
        assert LEVEL_KEYS <= set(row), row
        assert row["errors"] == 0 and row["answered"] > 0, row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"], row
    assert all(r["mean_batch"] == 1.0 for r in levels if not r["batching"])

    raw = report["raw_decoder"]
    assert {1, 4} <= {r["batch_size"] for r in raw}
    assert all(r["throughput_rps"] > 0 for r in raw)

    overload = report["overload"]
    assert overload["sent"] > 0
    assert overload["sent"] == overload["answered"] + overload["refused_503"] + overload["lost"]
    assert overload["errors"] == 0

    scaling = report["tasks_scaling"]
    assert [r["tasks"] for r in scaling] == [1, 2, 4]
    assert all(r["p50_ms"] > 0 and r["decoder_ms_in_server"] > 0 and r["errors"] == 0 for r in scaling)

    targets = report["targets"]
    assert set(targets) == {"batching_speedup", "served_vs_raw", "overload", "per_request_overhead"}
    assert all(isinstance(t["holds"], bool) for t in targets.values())
    assert {"a_ms", "b_ms", "single_decoder_pass_ms"} <= set(targets["per_request_overhead"])


def test_a_burst_beyond_max_queue_is_refused_with_retry_after_and_nothing_is_lost(
    tiny_bundle: Path, bodies: list[bytes]
) -> None:
    # A long queue delay holds the first requests in the batcher, so the queue is full
    # for certain while the rest of the burst arrives.
    settings = {"max_queue": 4, "max_batch_size": 64, "max_queue_delay_ms": 500}
    with ServerProcess(tiny_bundle, auth="off", **settings) as server:
        workload = Workload(f"{server.url}/v1/predict", bodies, {"Content-Type": CONTENT_TYPE})
        burst = open_loop(workload, rate=2000, seconds=0.05, max_requests=100, connections=100, timeout=30)
        after = closed_loop(workload, concurrency=1, seconds=0.2, max_requests=5, warmup_s=0)
    assert burst.sent == 100
    assert burst.lost == 0 and burst.errors == 0
    assert burst.answered + burst.refused_503 == burst.sent
    assert burst.refused_503 > 0 and burst.retry_after
    assert burst.answered >= settings["max_queue"]
    assert after.answered == after.sent > 0  # and the server keeps answering


def test_many_task_bundle_copies_one_decoder_under_32_names_with_the_same_fingerprint(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    names = make_many_task_bundle(tiny_bundle, tmp_path / "many")
    manifest, original = read_manifest(tmp_path / "many"), read_manifest(tiny_bundle)
    assert names == [f"t{i:02d}" for i in range(32)] == manifest.task_names
    assert manifest.device_fingerprint == original.device_fingerprint
    assert {t.kind for t in manifest.tasks} == {"classification"}
    decoder = (tiny_bundle / "cloud/shape.onnx").read_bytes()
    for task in manifest.tasks:  # every file is listed with its sha256
        assert read_bytes_checked(tmp_path / "many", manifest, task.file) == decoder
