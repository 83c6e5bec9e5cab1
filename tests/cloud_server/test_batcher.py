"""No request is left waiting: a stopped batcher refuses, a queued request has a deadline, a dead
worker makes the server unready, and a version swapped while a body is parsed serves it anyway.

Direct Batcher / DataPlane tests on the real tiny bundle, and the app in process.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from cloud_server import oip
from cloud_server.app import create_app
from cloud_server.batcher import Batcher, NotServing
from cloud_server.dataplane import DataPlane
from cloud_server.errors import error_response, status_for
from cloud_server.runtime import CloudBundle
from cloud_server.settings import CloudSettings
from device_client import DeviceEncoder
from models.data import make_shapes
from shared.errors import Overloaded

WAIT = 10.0  # far longer than any answer here takes; reaching it means a request was left waiting


@pytest.fixture(scope="module")
def symbols(tiny_bundle: Path) -> npt.NDArray[np.uint8]:
    return DeviceEncoder(tiny_bundle).encode(list(make_shapes("test", count=2).images)).symbols


@pytest.fixture()
def bundle(tiny_bundle: Path) -> Iterator[CloudBundle]:
    yield CloudBundle(tiny_bundle)  # one per test: some tests slow or break its decoders


class WorkerKiller(BaseException):
    """Not an Exception: escapes the batcher's per-batch handler, as a bug in the worker would."""


def test_a_stopped_batcher_refuses_at_once_with_503_and_retry_after(
    bundle: CloudBundle, symbols: npt.NDArray[np.uint8]
) -> None:
    async def scenario() -> NotServing:
        batcher = Batcher(bundle)
        batcher.start()
        assert (await batcher.submit(bundle.decode_symbols(symbols, None))).outputs
        await batcher.stop()
        with pytest.raises(NotServing) as info:
            await asyncio.wait_for(batcher.submit(bundle.decode_symbols(symbols, None)), WAIT)
        assert batcher.depth == 0
        return info.value

    refused = asyncio.run(scenario())
    assert "unloaded or replaced" in str(refused) and "retry" in str(refused)
    assert isinstance(refused, Overloaded) and status_for(refused) == 503
    assert error_response(refused, _request()).headers["retry-after"] == "1"


def test_a_request_that_reaches_an_unloaded_version_is_refused_not_left_waiting(
    tiny_bundle: Path, symbols: npt.NDArray[np.uint8]
) -> None:
    """A route that resolved the version, then awaited (parsing a body) while it was unloaded."""

    async def scenario() -> float | None:
        plane = DataPlane(CloudSettings(auth="off"))
        served = await plane.load(tiny_bundle)
        await plane.unload("tiny", 1)
        with pytest.raises(NotServing):
            await asyncio.wait_for(plane.infer_symbols(served, symbols, None), WAIT)
        return plane.metrics.registry.get_sample_value("devtune_refused_total")

    assert asyncio.run(scenario()) == 1


def test_queued_requests_get_503_at_their_deadline_instead_of_waiting_on(
    bundle: CloudBundle, symbols: npt.NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = bundle.run

    def slow_run(task: str, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if task == "shape":
            time.sleep(0.5)  # a decoder pass far longer than the deadline
        return run(task, z)

    monkeypatch.setattr(bundle, "run", slow_run)

    async def scenario() -> tuple[list[BaseException | Any], float, int]:
        batcher = Batcher(bundle, max_batch_size=2, max_delay_ms=0, queue_deadline_ms=200)
        batcher.start()
        started = time.perf_counter()
        # The first rides the slow pass, the second waits in the queue behind it.
        answers = await asyncio.gather(
            *(batcher.submit(bundle.decode_symbols(symbols, None)) for _ in range(2)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        queued = len(batcher._queue)
        await batcher.stop()
        return answers, elapsed, queued

    answers, elapsed, queued = asyncio.run(scenario())
    assert all(isinstance(a, Overloaded) and "queue deadline of 0.2 s" in str(a) for a in answers), answers
    assert elapsed < 0.45  # answered at the deadline (0.2 s), not after the passes (0.5 s each)
    assert queued == 0  # the one that timed out in the queue gave its place back


def test_a_worker_that_dies_is_logged_fails_what_it_held_and_makes_the_server_unready(
    tiny_bundle: Path, symbols: npt.NDArray[np.uint8], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(CloudSettings(auth="off"))
    plane: DataPlane = app.state.plane

    def broken_run(task: str, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        raise WorkerKiller

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        served = await plane.load(tiny_bundle)
        async with _client(app) as client:
            ready = await client.get("/readyz")
            served.bundle.run = broken_run  # type: ignore[method-assign]
            with pytest.raises(NotServing, match="died"):
                await asyncio.wait_for(plane.infer_symbols(served, symbols, None), WAIT)
            with pytest.raises(NotServing, match="died"):  # and the next one is refused at once
                await asyncio.wait_for(plane.infer_symbols(served, symbols, None), WAIT)
            unready = await client.get("/readyz")
        await plane.close()
        return ready, unready

    with caplog.at_level(logging.ERROR, logger="cloud_server"):
        ready, unready = asyncio.run(scenario())
    assert ready.status_code == 200
    assert unready.status_code == 503 and unready.json()["status"] == "not ready"
    assert any("batcher worker of tiny v1 died" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_version_replaced_while_the_body_is_parsed_still_answers_the_request(
    tiny_bundle: Path, symbols: npt.NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OIP resolves the version, parses the body (in a thread: it is gzip'd), then submits: the
    version is reloaded in between, and the request is served by the one that replaced it."""
    app = create_app(CloudSettings(auth="off"))
    plane: DataPlane = app.state.plane
    parsing, release = threading.Event(), threading.Event()
    read_request = oip.read_request

    def held_read_request(*args: Any) -> Any:
        parsing.set()
        release.wait(WAIT)
        return read_request(*args)

    monkeypatch.setattr(oip, "read_request", held_read_request)
    tensor = {"name": "representation", "datatype": "UINT8", "shape": list(symbols.shape),
              "data": symbols.ravel().tolist()}
    body = gzip.compress(json.dumps({"inputs": [tensor]}).encode())

    async def scenario() -> tuple[httpx.Response, int, int]:
        first = await plane.load(tiny_bundle)
        async with _client(app) as client:
            answer = asyncio.create_task(client.post(
                "/v2/models/tiny/infer", content=body, headers={"Content-Encoding": "gzip"}
            ))
            assert await asyncio.to_thread(parsing.wait, WAIT)
            second = await plane.load(tiny_bundle)  # same name and version: replaces it, stops the old one
            release.set()
            response = await asyncio.wait_for(answer, WAIT)
        stopped, served = first.batcher.depth, second.batcher.depth
        await plane.close()
        return response, stopped, served

    response, stopped, served = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["shape", "color", "texture", "size", "mask"]
    assert stopped == served == 0


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://batcher.test")


def _request() -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "method": "POST", "path": "/v1/predict", "headers": []})
