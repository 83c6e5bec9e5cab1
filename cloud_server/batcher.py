"""Dynamic batching: concurrent requests share one decoder pass per task.

Requests wait in a bounded queue. The worker takes what is queued (up to
``max_batch_size`` samples) and runs each wanted task's decoder once over the rows of
every request that asked for it, in a worker thread so the event loop keeps accepting.
A pass's tasks are independent, so with ``pass_threads`` above 1 they run side by side on
that many threads: on two cores a pass of five decoders takes the time of three.

Batching is adaptive: the worker waits for company (up to ``max_delay`` after the first
request was queued) only while other requests are on their way to this batcher, counted
from when the data plane routes them here until they are queued (``expecting``: their
payload is being decoded, or their body parsed, off the loop). A lone request runs at
once, so at concurrency 1 the latency is the work, not the delay. Under load the
requests that arrive while a pass runs queue up and share the next one.

A lone request (``alone()`` says the server handles no other, it has at most
``inline_samples`` samples, and the pass before served one request alone too) runs its
pass on the event loop itself: the hop to the decoder thread and back costs two thread
wake-ups, more than a small pass's own overhead on a busy machine, and with nothing else
in flight the loop has nothing better to do meanwhile. The pass before must have been
lone as well because the server cannot see requests still in socket buffers: after a
big batch is answered its clients send again at once, and the first of them to be parsed
looks alone while the rest wait to be read; run on the loop, its pass would hold them
there instead of letting the loop read them meanwhile.

No request is left waiting: a full queue refuses at once with ``Overloaded``; a batcher
that is stopping (its version unloaded or replaced) or whose worker died refuses with
``NotServing``, an ``Overloaded`` too (503 with Retry-After); and every queued request
has a deadline, past which it is answered ``Overloaded`` instead of waiting on. A worker
that dies is logged, fails what it held, and marks the batcher failed, which makes the
server report not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud_server.runtime import CloudBundle, Decoded
from shared.errors import Overloaded

__all__ = ["BatchOutcome", "Batcher", "NotServing"]

log = logging.getLogger("cloud_server")

Outputs = dict[str, npt.NDArray[np.float32]]


class NotServing(Overloaded):
    """The batcher takes no more work: its version is being unloaded or replaced, or its worker died."""


@dataclass(frozen=True)
class BatchOutcome:
    outputs: Outputs  # task -> (B, ...) raw decoder output for this request's samples
    queue_ms: float
    compute_ms: float
    batch_size: int  # samples in the batch this request rode in


@dataclass(eq=False)  # compared by identity: the queue removes an item that gave up
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
        queue_deadline_ms: float = 5000.0,
        alone: Callable[[], bool] | None = None,
        inline_samples: int = 0,
        pass_threads: int = 1,
    ) -> None:
        self.bundle = bundle
        self.alone = alone  # None: every pass runs on the decoder thread
        self.inline_samples = inline_samples
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self.max_queue = max_queue
        self.deadline = queue_deadline_ms / 1000
        self.failure: BaseException | None = None  # why the worker died, if it did
        manifest = bundle.manifest
        self.label = f"{manifest.name} v{manifest.version}"
        self._queue: deque[_Item] = deque()
        self._running: list[_Item] = []
        self._accepting = True
        self._arriving = 0  # requests routed here, not yet queued (see ``expecting``)
        self._last_pass_lone = False  # the last pass served one request: traffic comes one at a time
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder")
        self._pass_threads = pass_threads
        self._pool = (ThreadPoolExecutor(max_workers=pass_threads - 1, thread_name_prefix="decoder-task")
                      if pass_threads > 1 else None)  # the other tasks of a pass, beside its thread
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return len(self._queue) + len(self._running)

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around the work a request does, off the loop, before it is submitted here: while
        any such request is on its way, the worker waits for it (adaptive batching)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            if not self._arriving and self._queue:
                self._wakeup.set()  # a worker waiting for company has nobody left to wait for

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher {self.label}")
        self._task.add_done_callback(self._worker_exited)

    async def stop(self) -> None:
        """Refuse new work, finish every accepted request, then stop the worker.

        Every accepted request is answered or past its deadline within ``deadline``, so
        the worker is given that long (and a second more) before it is cancelled.
        """
        self._accepting = False
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            done, _ = await asyncio.wait({self._task}, timeout=self.deadline + 1.0)
            if not done:
                log.warning("the batcher of %s did not finish within %.1f s of stopping; cancelled it",
                            self.label, self.deadline + 1.0)
                self._task.cancel()
                await asyncio.wait({self._task})
        self._fail_pending(NotServing(f"{self.label} was unloaded before this request ran; retry shortly"))
        self._executor.shutdown(wait=False)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    async def submit(self, decoded: Decoded) -> BatchOutcome:
        if not self._accepting or self.failure is not None or (self._task is not None and self._task.done()):
            raise NotServing(self._closed_reason())
        if len(self._queue) >= self.max_queue:
            raise Overloaded(
                f"server is at capacity ({len(self._queue)} requests queued); retry shortly",
                retry_after=1.0,
            )
        item = _Item(decoded, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(item.future, self.deadline)  # cancels the future on timeout
        except asyncio.TimeoutError:
            raise Overloaded(
                f"no decoder pass of {self.label} answered within the queue deadline of {self.deadline:g} s "
                f"({len(self._queue)} requests still queued); the server is overloaded, retry shortly",
                retry_after=1.0,
            ) from None
        finally:
            if item in self._queue:  # timed out or cancelled while queued: free its place
                self._queue.remove(item)

    def _closed_reason(self) -> str:
        if self.failure is not None:
            return (f"the decoder worker of {self.label} died ({type(self.failure).__name__}, logged); "
                    "this server is not ready, retry on another replica or after a restart")
        return f"{self.label} is being unloaded or replaced and takes no new requests; retry shortly"

    def _fail_pending(self, exc: Overloaded) -> None:
        for item in (*self._queue, *self._running):
            if not item.future.done():
                item.future.set_exception(exc)
        self._queue.clear()
        self._running = []

    def _worker_exited(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if not self._accepting:
                return  # stop() gave up waiting and cancelled it: stop() fails what is left
            failure: BaseException = asyncio.CancelledError("the batcher worker was cancelled")
        else:
            exc = task.exception()
            if exc is None:
                return  # stopped: every accepted request was answered
            failure = exc
        self.failure = failure
        log.error("the batcher worker of %s died; it takes no more requests and the server is not ready",
                  self.label, exc_info=failure)
        self._fail_pending(NotServing(self._closed_reason()))

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        samples = 0
        while self._queue and (not batch or samples + self._queue[0].size <= self.max_batch_size):
            item = self._queue.popleft()
            if item.future.done():  # given up on (deadline, disconnect): nobody waits for it
                continue
            batch.append(item)
            samples += item.size
        return batch

    def _queued_samples(self) -> int:
        return sum(item.size for item in self._queue)

    async def _gather(self) -> None:
        """Wait for the requests on their way to share the first one's pass, up to ``max_delay``."""
        deadline = self._queue[0].enqueued + self.max_delay
        while self._arriving and self._accepting and self._queue:
            if self._queued_samples() >= self.max_batch_size:
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if not self._accepting:
                    return  # stopping, and every accepted request was answered
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            batch = self._take()
            if not batch:
                continue
            self._running = batch
            started = time.perf_counter()
            try:
                lone = self._lone(batch)
                self._last_pass_lone = len(batch) == 1
                if lone:
                    results = self._compute(batch)
                else:
                    results = await loop.run_in_executor(self._executor, self._compute, batch)
            except Exception as exc:  # noqa: BLE001 - a decoder failure fails this batch, not the server
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
            self._running = []

    def _lone(self, batch: list[_Item]) -> bool:
        """Whether ``batch`` is one small request, the server handles no other, and the last pass
        was lone too: run it on the loop."""
        return (self.alone is not None and self._last_pass_lone and len(batch) == 1
                and batch[0].size <= self.inline_samples and not self._queue and not self._arriving
                and self.alone())

    def _compute(self, batch: list[_Item]) -> list[Outputs]:
        """One decoder pass per task over the rows of every request that wants it. A bundle's
        shared trunk runs once over the whole batch, and each head on it takes its members' rows.
        With ``pass_threads`` above 1 the tasks' decoders run side by side, this thread and the
        pool's each taking a share (ONNX Runtime lets go of the GIL while a decoder runs)."""
        z = np.concatenate([item.decoded.z for item in batch]) if len(batch) > 1 else batch[0].decoded.z
        bounds = np.cumsum([0] + [item.size for item in batch])
        wanted = list(dict.fromkeys(task for item in batch for task in item.decoded.tasks))
        on_trunk = self.bundle.on_trunk
        features = self.bundle.features(z) if any(task in on_trunk for task in wanted) else None

        members = {task: [i for i, item in enumerate(batch) if task in item.decoded.tasks] for task in wanted}

        def run(task: str) -> npt.NDArray[np.float32]:
            source = features if features is not None and task in on_trunk else z
            chosen = members[task]
            rows = source if len(chosen) == len(batch) else np.concatenate(
                [source[bounds[i] : bounds[i + 1]] for i in chosen])
            return self.bundle.run_head(task, rows) if source is features else self.bundle.run(task, rows)

        def run_all(tasks: list[str]) -> list[npt.NDArray[np.float32]]:
            return [run(task) for task in tasks]

        if self._pool is not None and len(wanted) > 1:
            k = min(self._pass_threads, len(wanted))
            shares = [wanted[j::k] for j in range(k)]  # dealt out in turns; this thread takes the first
            others = [self._pool.submit(run_all, share) for share in shares[1:]]
            outs = dict(zip(shares[0], run_all(shares[0])))
            for share, future in zip(shares[1:], others):
                outs.update(zip(share, future.result()))
        else:
            outs = dict(zip(wanted, run_all(wanted)))
        results: list[Outputs] = [{} for _ in batch]
        for task in wanted:  # in the order asked for: the answers list them so
            out, offset = outs[task], 0
            for i in members[task]:
                size = batch[i].size
                results[i][task] = out[offset : offset + size]
                offset += size
        return results
