"""Dynamic batching: concurrent requests share one decoder pass per task.

Requests wait in a bounded queue. The worker takes the first one, waits up to
``max_delay`` for more (until ``max_batch_size`` samples), then runs each wanted task's
decoder once over the rows of every request that asked for it, in a worker thread so the
event loop keeps accepting. A full queue refuses at once with ``Overloaded``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud_server.runtime import CloudBundle, Decoded
from shared.errors import Overloaded

__all__ = ["BatchOutcome", "Batcher"]

Outputs = dict[str, npt.NDArray[np.float32]]


@dataclass(frozen=True)
class BatchOutcome:
    outputs: Outputs  # task -> (B, ...) raw decoder output for this request's samples
    queue_ms: float
    compute_ms: float
    batch_size: int  # samples in the batch this request rode in


@dataclass
class _Item:
    decoded: Decoded
    future: asyncio.Future[BatchOutcome]
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> int:
        return int(self.decoded.z.shape[0])


class Batcher:
    def __init__(
        self,
        bundle: CloudBundle,
        max_batch_size: int = 64,
        max_delay_ms: float = 2.0,
        max_queue: int = 512,
    ) -> None:
        self.bundle = bundle
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self.max_queue = max_queue
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder")
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return len(self._queue) + self._in_flight

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Finish every accepted request, then stop the worker."""
        while self._queue or self._in_flight:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, decoded: Decoded) -> BatchOutcome:
        if len(self._queue) >= self.max_queue:
            raise Overloaded(
                f"server is at capacity ({len(self._queue)} requests queued); retry shortly",
                retry_after=1.0,
            )
        item = _Item(decoded, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wakeup.set()
        return await item.future

    def _take(self) -> list[_Item]:
        batch = [self._queue.popleft()]
        samples = batch[0].size
        while self._queue and samples + self._queue[0].size <= self.max_batch_size:
            item = self._queue.popleft()
            batch.append(item)
            samples += item.size
        return batch

    def _queued_samples(self) -> int:
        return sum(item.size for item in self._queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0].enqueued + self.max_delay
            while self._queued_samples() < self.max_batch_size and time.perf_counter() < deadline:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), deadline - time.perf_counter())
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            self._in_flight += len(batch)
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._compute, batch)
            except Exception as exc:  # a decoder failure fails this batch, not the server
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            else:
                compute_ms = (time.perf_counter() - started) * 1000
                samples = sum(item.size for item in batch)
                for item, outputs in zip(batch, results):
                    if not item.future.done():
                        queue_ms = (started - item.enqueued) * 1000
                        item.future.set_result(BatchOutcome(outputs, queue_ms, compute_ms, samples))
            finally:
                self._in_flight -= len(batch)

    def _compute(self, batch: list[_Item]) -> list[Outputs]:
        """One decoder pass per task over the rows of every request that wants it."""
        z = np.concatenate([item.decoded.z for item in batch]) if len(batch) > 1 else batch[0].decoded.z
        bounds = np.cumsum([0] + [item.size for item in batch])
        results: list[Outputs] = [{} for _ in batch]
        wanted = dict.fromkeys(task for item in batch for task in item.decoded.tasks)
        for task in wanted:
            members = [i for i, item in enumerate(batch) if task in item.decoded.tasks]
            if len(members) == len(batch):
                rows = z
            else:
                rows = np.concatenate([z[bounds[i] : bounds[i + 1]] for i in members])
            out = self.bundle.run(task, rows)
            offset = 0
            for i in members:
                size = batch[i].size
                results[i][task] = out[offset : offset + size]
                offset += size
        return results
