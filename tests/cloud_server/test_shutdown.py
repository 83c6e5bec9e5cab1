"""SIGTERM: the server stops taking work, finishes what it accepted, and exits cleanly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from device_client import DeviceEncoder
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.protocol import CONTENT_TYPE, pack_request

SENDERS = 4


def received_bytes(url: str) -> float:
    """Request body bytes the server has read on /v1/predict, from its /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith('devtune_received_bytes_total{route="/v1/predict"}'):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_finishes_requests_in_flight(tiny_bundle: Path) -> None:
    encoder = DeviceEncoder(tiny_bundle)
    # Maximum-size batches: each is its own decoder pass (max_batch_size 64), one after the
    # other, so the last ones are still being decoded and run when SIGTERM lands.
    images = list(make_shapes("test", count=256).images)
    body = pack_request(encoder.request(encoder.encode(images)))
    server = ServerProcess(tiny_bundle, auth="off", max_batch_size=64).start()
    statuses: list[int] = []
    answered_at: list[float] = []

    def send() -> None:
        answer = httpx.post(f"{server.url}/v1/predict", content=body,
                            headers={"Content-Type": CONTENT_TYPE}, timeout=60)
        answered_at.append(time.monotonic())
        statuses.append(answer.status_code)

    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    # Until the server has read every body: then all of them are accepted, and at least the
    # last one (a 256-sample decode and decoder pass, tens of ms on any machine) is in flight.
    deadline = time.monotonic() + 30
    while received_bytes(server.url) < SENDERS * len(body):
        assert time.monotonic() < deadline, "the server did not read the requests within 30 s"
        time.sleep(0.01)
    assert server.process is not None
    terminated_at = time.monotonic()
    server.process.terminate()
    for sender in senders:
        sender.join()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit is by SIGTERM
    assert server.process.wait(timeout=30) in (0, -15)
    assert statuses == [200] * SENDERS
    assert max(answered_at) > terminated_at, "every request was answered before SIGTERM: nothing was drained"
    try:
        httpx.get(f"{server.url}/healthz", timeout=2)
    except httpx.TransportError:
        pass  # no longer taking work
    else:
        raise AssertionError("the server still answered after SIGTERM")
