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


def test_sigterm_finishes_requests_in_flight(tiny_bundle: Path) -> None:
    encoder = DeviceEncoder(tiny_bundle)
    body = pack_request(encoder.request(encoder.encode(list(make_shapes("test", count=2).images))))
    # A long batching delay keeps the requests queued in the batcher when SIGTERM lands.
    server = ServerProcess(tiny_bundle, auth="off", max_queue_delay_ms=1500, max_batch_size=64).start()
    statuses: list[int] = []

    def send() -> None:
        answer = httpx.post(f"{server.url}/v1/predict", content=body,
                            headers={"Content-Type": CONTENT_TYPE}, timeout=30)
        statuses.append(answer.status_code)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # accepted and waiting in the batcher
    assert server.process is not None
    server.process.terminate()
    for sender in senders:
        sender.join()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit is by SIGTERM
    assert server.process.wait(timeout=30) in (0, -15)
    assert statuses == [200] * 4
    try:
        httpx.get(f"{server.url}/healthz", timeout=2)
    except httpx.TransportError:
        pass  # no longer taking work
    else:
        raise AssertionError("the server still answered after SIGTERM")
