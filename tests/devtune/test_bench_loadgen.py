"""The load generator against the real server: a burst beyond max_queue, and what it sends.

Behaviour only (counts that add up, 503s that say when to come back); how fast the
server is belongs to the benchmark, not to a timed test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from device_client import DeviceEncoder
from devtune.bench.loadgen import Workload, closed_loop, open_loop, scrape_histogram
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.protocol import CONTENT_TYPE, pack_request


@pytest.fixture(scope="module")
def bodies(tiny_bundle: Path) -> list[bytes]:
    encoder = DeviceEncoder(tiny_bundle)
    return [pack_request(encoder.request(encoder.encode([image]))) for image in make_shapes("test", count=4).images]


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


def test_a_workload_is_sent_as_complete_http_requests() -> None:
    workload = Workload("http://127.0.0.1:8000/v1/predict?x=1", [b"ab", b"cde"], {"Content-Type": CONTENT_TYPE})
    first, second = workload.requests()
    assert first.startswith(b"POST /v1/predict?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert first.endswith(b"Content-Length: 2\r\n\r\nab") and second.endswith(b"Content-Length: 3\r\n\r\ncde")
    with pytest.raises(ValueError, match="at least one request body"):
        Workload("http://127.0.0.1:8000/", [])
    with pytest.raises(ValueError, match="plain http"):
        Workload("https://example.org/", [b"x"])


def test_histograms_are_read_off_a_metrics_page() -> None:
    page = "# HELP x\ndevtune_batch_samples_sum 12.0\ndevtune_batch_samples_count 3.0\nother_sum 9\n"
    assert scrape_histogram(page, "devtune_batch_samples") == (12.0, 3.0)
    assert scrape_histogram(page, "missing") == (0.0, 0.0)
