"""The event loop never blocks on a request's work: health checks are answered while the
server decodes and answers maximum-size batches (256 samples).

Two views. In process, the decode of one batch is made to hold the GIL for 0.5 s, whatever
the entropy coder's speed, and the health checks answered *during* it are counted. On the
real server, several clients send maximum-size batches while /healthz is probed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cloud_server.app import create_app
from cloud_server.dataplane import DataPlane
from cloud_server.runtime import Decoded
from cloud_server.settings import CloudSettings
from device_client import DeviceEncoder
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.protocol import CONTENT_TYPE, PredictRequest, pack_request, unpack_response

MAX_BATCH = 256  # CloudSettings.max_batch: the most samples one request may carry
HEALTHZ_LIMIT_S = 0.050


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> DeviceEncoder:
    return DeviceEncoder(tiny_bundle)


@pytest.fixture(scope="module")
def max_body(encoder: DeviceEncoder) -> bytes:
    images = list(make_shapes("test", count=MAX_BATCH).images)
    return pack_request(encoder.request(encoder.encode(images)))


@pytest.fixture(scope="module")
def max_body_without_masks(encoder: DeviceEncoder) -> bytes:
    """Every task but the dense mask, whose decoder pass over 256 samples takes about half a
    second on the development machine: the run stays short, and the payload work (the
    same entropy decoding whatever the tasks) is a large share of what the server does."""
    images = list(make_shapes("test", count=MAX_BATCH).images)
    tasks = [name for name in encoder.manifest.task_names if name != "mask"]
    return pack_request(encoder.request(encoder.encode(images), tasks))


def test_health_checks_are_answered_while_a_maximum_size_batch_is_decoded(
    tiny_bundle: Path, max_body: bytes
) -> None:
    app = create_app(CloudSettings(auth="off"))
    plane: DataPlane = app.state.plane
    decode_s = 0.5
    decodes: list[tuple[float, float]] = []

    async def scenario() -> tuple[httpx.Response, list[tuple[float, float]]]:
        served = await plane.load(tiny_bundle)
        decode = served.bundle.decode

        def slow_decode(request: PredictRequest) -> Decoded:
            # Like the pure-Python coder on a big batch, but long enough whatever its speed:
            # hold the GIL (a busy loop, not a sleep) until decode_s has passed.
            started = time.perf_counter()
            decoded = decode(request)
            while time.perf_counter() - started < decode_s:
                pass
            decodes.append((started, time.perf_counter()))
            return decoded

        served.bundle.decode = slow_decode  # type: ignore[method-assign]
        probes: list[tuple[float, float]] = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loop.test") as client:
            predict = asyncio.create_task(
                client.post("/v1/predict", content=max_body, headers={"Content-Type": CONTENT_TYPE})
            )
            while not predict.done():
                sent = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                probes.append((sent, time.perf_counter()))
                await asyncio.sleep(0.005)
            answer = await predict
        await plane.close()
        return answer, probes

    answer, probes = asyncio.run(scenario())
    assert answer.status_code == 200, answer.text
    assert len(unpack_response(answer.content).predictions["shape"]) == MAX_BATCH
    ((start, end),) = decodes
    during = sorted(done - sent for sent, done in probes if start <= sent and done <= end)
    # A decode on the loop would let no probe through until it ended; off the loop, the
    # loop gets the GIL at every switch interval (5 ms) and answers probe after probe.
    assert len(during) >= 5, f"{len(during)} health checks answered during a {decode_s} s decode"
    # All within 50 ms but one, which a busy shared machine may delay (it did, once, by 97 ms).
    slowest = ", ".join(f"{s * 1000:.0f}" for s in during[-3:])
    assert during[-2] < HEALTHZ_LIMIT_S, f"slowest health checks during the decode: {slowest} ms"


# A sender of its own (a process, not a thread of the test): the probes below then share
# the test process's GIL with nothing, and measure the server, not the load generator.
SENDER = """
import sys, httpx
url, batches, body = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
with httpx.Client(timeout=60, headers={"Content-Type": "application/vnd.msgpack"}) as client:
    print(" ".join(str(client.post(url, content=body).status_code) for _ in range(batches)))
"""


def test_healthz_answers_within_50_ms_while_clients_send_maximum_size_batches(
    tiny_bundle: Path, max_body_without_masks: bytes, tmp_path: Path
) -> None:
    """The real server under a closed loop of maximum-size batches, probed every 10 ms.

    Each batch costs the server about 0.1 s of pure-Python work (entropy decoding 256
    samples, building and packing their answers; measured on the 2-core development
    machine), which used to run on the event loop: a probe that landed then waited for
    it, and for the next batch's. Off the loop, a probe waits only for its turn at the
    GIL (5 ms switch interval) and at the CPU.

    The margin: a shared machine delays any process now and then (an idle server's
    slowest probe was 60-150 ms there while other jobs trained). So an idle control
    server, probed right after the loaded one all along, measures what the machine adds,
    and the loaded server must answer within 50 ms of the control's slowest probe.
    """
    senders, batches = 3, 4  # each sender: 4 batches of 256 samples, one after the other
    body = tmp_path / "batch.msgpack"
    body.write_bytes(max_body_without_masks)
    with (
        ServerProcess(tiny_bundle, auth="off") as server,
        ServerProcess(tiny_bundle, auth="off") as control_server,
        httpx.Client(base_url=server.url) as probe,
        httpx.Client(base_url=control_server.url) as control,
    ):
        probe.get("/healthz"), control.get("/healthz")  # connect before the load starts
        command = [sys.executable, "-c", SENDER, f"{server.url}/v1/predict", str(batches), str(body)]
        load = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(senders)]
        loaded, idle = [], []
        while any(sender.poll() is None for sender in load):
            for client, round_trips in ((probe, loaded), (control, idle)):
                sent = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                round_trips.append(time.perf_counter() - sent)
            time.sleep(0.01)
        statuses = [sender.communicate(timeout=60)[0].split() for sender in load]
    assert statuses == [[b"200"] * batches] * senders
    assert len(loaded) >= 10
    allowed = HEALTHZ_LIMIT_S + max(idle)
    late = [rt for rt in loaded if rt >= allowed]
    # One late probe is the machine's doing (a process descheduled at the wrong moment: the
    # control, probed a moment later, misses it); a loop that blocks on a batch's work delays
    # a probe for each of the 12 batches.
    slowest = ", ".join(f"{s * 1000:.0f}" for s in sorted(loaded)[-3:])
    assert len(late) <= 1, (
        f"{len(late)} of {len(loaded)} /healthz round trips under load took {allowed * 1000:.0f} ms or more "
        f"(50 ms + the idle control's slowest, {max(idle) * 1000:.0f} ms); the slowest: {slowest} ms"
    )
