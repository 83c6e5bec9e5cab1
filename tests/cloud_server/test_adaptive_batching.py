"""Adaptive batching: a lone request runs at once; requests that come together share a pass,
and the batcher waits for one that is still being decoded.

The queue delay here is 1 s, far above anything else these requests take: a request that
waited for company that could not come would show it in its queue time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cloud_server.batcher import Batcher
from cloud_server.dataplane import INLINE_SAMPLES, DataPlane
from cloud_server.runtime import CloudBundle
from cloud_server.settings import CloudSettings
from device_client import DeviceEncoder
from models.data import make_shapes
from shared.protocol import PredictRequest, PredictResponse

DELAY_MS = 1000.0


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> DeviceEncoder:
    return DeviceEncoder(tiny_bundle)


@pytest.fixture(scope="module")
def images() -> list[npt.NDArray[np.uint8]]:
    return list(make_shapes("test", count=2 * INLINE_SAMPLES + 2).images)


def _request(encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]) -> PredictRequest:
    return encoder.request(encoder.encode(images))


def _batches(plane: DataPlane) -> tuple[float | None, float | None]:
    """(requests, samples summed over the batches they rode in) from the batch size histogram."""
    registry = plane.metrics.registry
    return (registry.get_sample_value("devtune_batch_samples_count"),
            registry.get_sample_value("devtune_batch_samples_sum"))


def test_a_lone_request_does_not_wait_for_company(
    tiny_bundle: Path, encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]
) -> None:
    async def scenario() -> list[PredictResponse]:
        plane = DataPlane(CloudSettings(max_queue_delay_ms=DELAY_MS))
        await plane.load(tiny_bundle)
        small = _request(encoder, images[:1])  # decoded on the loop
        big = _request(encoder, images[: INLINE_SAMPLES + 1])  # decoded off the loop
        answers = [await plane.predict(request) for request in (small, big, small)]
        await plane.close()
        return answers

    for answer in asyncio.run(scenario()):
        assert answer.timing.queue_ms < 100, answer.timing  # ~0: not the 1000 ms delay


def test_requests_queued_together_share_one_pass(
    tiny_bundle: Path, encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]
) -> None:
    bundle = CloudBundle(tiny_bundle)
    symbols = encoder.encode(images[:2]).symbols

    async def scenario() -> list[int]:
        batcher = Batcher(bundle, max_batch_size=64, max_delay_ms=DELAY_MS)
        batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(bundle.decode_symbols(symbols, None)) for _ in range(4)))
        await batcher.stop()
        assert all(outcome.queue_ms < 100 for outcome in outcomes)  # nobody else was coming
        return [outcome.batch_size for outcome in outcomes]

    assert asyncio.run(scenario()) == [8, 8, 8, 8]  # 4 requests of 2 samples, one pass


def test_the_batcher_waits_for_a_request_still_being_decoded(
    tiny_bundle: Path, encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]
) -> None:
    """Two big requests at once: their payloads are decoded one after the other (off the loop),
    so the first is queued while the second is still on its way, and waits for it."""
    first = _request(encoder, images[: INLINE_SAMPLES + 1])
    second = _request(encoder, images[INLINE_SAMPLES + 1 :])

    async def scenario() -> tuple[list[PredictResponse], tuple[float | None, float | None]]:
        plane = DataPlane(CloudSettings(max_queue_delay_ms=DELAY_MS, max_batch_size=64))
        await plane.load(tiny_bundle)
        answers = list(await asyncio.gather(plane.predict(first), plane.predict(second)))
        batches = _batches(plane)
        await plane.close()
        return answers, batches

    answers, (requests, samples) = asyncio.run(scenario())
    together = first.rep.shape[0] + second.rep.shape[0]
    assert (requests, samples) == (2, 2 * together)  # each rode the one pass of both
    assert all(answer.timing.queue_ms < DELAY_MS / 2 for answer in answers)  # ended by the arrival


def test_a_lone_request_runs_its_pass_on_the_loop_and_company_goes_to_the_decoder_thread(
    tiny_bundle: Path, encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]
) -> None:
    import threading

    bundle = CloudBundle(tiny_bundle)
    ran_on: list[str] = []
    run = bundle.run

    def recording_run(task: str, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        ran_on.append(threading.current_thread().name)
        return run(task, z)

    bundle.run = recording_run  # type: ignore[method-assign]
    one = bundle.decode_symbols(encoder.encode(images[:1]).symbols, bundle.task_names[:1])
    big = bundle.decode_symbols(encoder.encode(images[: INLINE_SAMPLES + 1]).symbols, bundle.task_names[:1])
    others = [0]  # requests the server handles besides this one

    async def scenario() -> None:
        batcher = Batcher(bundle, max_batch_size=64, max_delay_ms=DELAY_MS, alone=lambda: others[0] == 0,
                          inline_samples=INLINE_SAMPLES)
        batcher.start()
        await batcher.submit(one)  # alone, but the first: the decoder thread (company may be unread)
        await batcher.submit(one)  # alone and small after a lone pass: on the loop
        await batcher.submit(big)  # alone but big: the decoder thread
        others[0] = 1
        await batcher.submit(one)  # another request in flight: the decoder thread
        others[0] = 0
        await asyncio.gather(batcher.submit(one), batcher.submit(one))  # queued together: one pass, the thread
        await batcher.stop()

    asyncio.run(scenario())
    loop_thread = threading.main_thread().name
    assert ran_on[1] == loop_thread
    assert all(name.startswith("decoder") for i, name in enumerate(ran_on) if i != 1), ran_on
    assert len(ran_on) == 5  # the last two requests shared one pass


def test_a_pass_on_two_threads_runs_its_tasks_side_by_side_and_answers_as_one_thread_does(
    tiny_bundle: Path, encoder: DeviceEncoder, images: list[npt.NDArray[np.uint8]]
) -> None:
    """``pass_threads=2``: a pass of several tasks runs them on two threads at once, and every
    request (each wanting other tasks) gets exactly what the one-thread pass gives it."""
    import threading

    bundle = CloudBundle(tiny_bundle)
    names = bundle.task_names
    assert len(names) >= 3
    wants = [names, names[:1], names[1:], [names[-1], names[0]]]
    decoded = [bundle.decode_symbols(encoder.encode(images[i : i + 2]).symbols, tasks)
               for i, tasks in enumerate(wants)]
    ran_on: list[str] = []
    run = bundle.run

    def recording_run(task: str, z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        ran_on.append(threading.current_thread().name)
        return run(task, z)

    async def scenario(pass_threads: int) -> list[dict[str, npt.NDArray[np.float32]]]:
        batcher = Batcher(bundle, max_batch_size=64, max_delay_ms=DELAY_MS, pass_threads=pass_threads)
        batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(item) for item in decoded))
        await batcher.stop()
        assert {outcome.batch_size for outcome in outcomes} == {8}  # one pass for all four
        return [outcome.outputs for outcome in outcomes]

    alone = asyncio.run(scenario(1))
    bundle.run = recording_run  # type: ignore[method-assign]
    side_by_side = asyncio.run(scenario(2))
    assert {name.split("_")[0] for name in ran_on} == {"decoder", "decoder-task"}, ran_on
    assert len(ran_on) == len(names)  # each task once, over the rows of the requests that want it
    for want, one, two in zip(wants, alone, side_by_side):
        assert set(two) == set(want)
        for task in want:
            np.testing.assert_array_equal(one[task], two[task])
