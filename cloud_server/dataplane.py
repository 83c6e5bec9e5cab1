"""The data plane: which bundles are served, and predict() over them, for any protocol.

Bundles are keyed by (name, version). A request names a device fingerprint (in full, or
by a prefix of at least 16 hex digits), not a bundle: it is served by the newest loaded
version with that fingerprint, so a version that adds a tuned task takes over the
traffic of the devices it is compatible with.
Loading a version is atomic: the new one is warmed before it is swapped in, and the old
one finishes what it accepted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from cloud_server.batcher import Batcher, BatchOutcome
from cloud_server.metrics import Metrics
from cloud_server.runtime import CloudBundle, Decoded
from cloud_server.settings import CloudSettings
from shared.errors import BundleError, FingerprintMismatch, Overloaded, ProtocolError
from shared.predictions import to_predictions
from shared.protocol import PredictRequest, PredictResponse, Timing

__all__ = ["INLINE_SAMPLES", "MIN_FINGERPRINT_PREFIX", "DataPlane", "Served"]

log = logging.getLogger("cloud_server")

T = TypeVar("T")

INLINE_SAMPLES = 8
"""Requests of up to this many samples are decoded and answered on the event loop (``offload``)."""
MIN_FINGERPRINT_PREFIX = 16
"""Fewest hex digits of a device fingerprint that name it (8 bytes, as protocol v2 sends)."""
_HEX = re.compile(r"[0-9a-f]+")


@dataclass
class Served:
    bundle: CloudBundle
    batcher: Batcher

    @property
    def key(self) -> tuple[str, int]:
        return self.bundle.manifest.name, self.bundle.manifest.version

    def describe(self) -> dict[str, Any]:
        manifest = self.bundle.manifest
        return {
            "name": manifest.name,
            "version": manifest.version,
            "fingerprint": manifest.device_fingerprint,
            "representation": manifest.representation.model_dump(mode="json", exclude={"entropy"}),
            "tasks": [t.model_dump(mode="json", exclude={"file"}) for t in manifest.tasks],
        }


class DataPlane:
    def __init__(self, settings: CloudSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.models: dict[tuple[str, int], Served] = {}
        self.draining = False
        self._lock = asyncio.Lock()
        # One thread for the payload work of big requests. The entropy coder holds the GIL
        # while it decodes, so more threads would not decode faster, and every extra one
        # that wants the GIL is one more the event loop waits behind before it can answer.
        self._payload = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payload")

    @property
    def ready(self) -> bool:
        """A bundle is served, none of the served ones has a dead batcher, and not shutting down."""
        failed = any(served.batcher.failed for served in self.models.values())
        return bool(self.models) and not self.draining and not failed

    async def load(self, path: str | Path) -> Served:
        """Load, warm and swap in the bundle at ``path``; the old same-version copy drains."""
        return await self.serve(await self.open(path), source=path)

    async def open(self, path: str | Path) -> CloudBundle:
        """Load the bundle at ``path`` (every decoder checked against its sha256) and warm it,
        off the loop; nothing is served from it until ``serve``."""
        return await asyncio.to_thread(self._open, Path(path))

    async def serve(self, bundle: CloudBundle, source: str | Path | None = None) -> Served:
        """Swap an opened bundle in; the copy of the same name and version it replaces drains."""
        batcher = Batcher(
            bundle,
            self.settings.max_batch_size,
            self.settings.max_queue_delay_ms,
            self.settings.max_queue,
            self.settings.queue_deadline_ms,
            alone=lambda: self.metrics.in_flight <= 1,  # only this request in the app (Observe counts)
            inline_samples=INLINE_SAMPLES,
            pass_threads=self.settings.pass_thread_count(),
        )
        async with self._lock:
            batcher.start()
            served = Served(bundle, batcher)
            old = self.models.get(served.key)
            self.models[served.key] = served
            log.info("serving %s v%d from %s", *served.key, source or bundle.bundle_dir)
        if old is not None:
            await old.batcher.stop()
        return served

    def _open(self, path: Path) -> CloudBundle:
        bundle = CloudBundle(path, threads=self.settings.threads)
        bundle.warm_up()
        return bundle

    async def unload(self, name: str, version: int) -> None:
        async with self._lock:
            served = self.models.pop((name, version), None)
        if served is None:
            raise BundleError(f"{name} v{version} is not loaded; loaded: {self.list_keys()}")
        await served.batcher.stop()

    async def close(self) -> None:
        for served in list(self.models.values()):
            await served.batcher.stop()
        self.models.clear()
        self._payload.shutdown(wait=False)

    def list_keys(self) -> list[str]:
        return [f"{name} v{version}" for name, version in sorted(self.models)]

    def get(self, name: str, version: int | None = None) -> Served:
        """A loaded bundle by name (newest version unless one is given)."""
        versions = sorted(v for (n, v) in self.models if n == name)
        if not versions or (version is not None and version not in versions):
            wanted = name if version is None else f"{name} v{version}"
            raise BundleError(f"{wanted} is not loaded; loaded: {self.list_keys()}")
        return self.models[(name, version if version is not None else versions[-1])]

    def for_fingerprint(self, fingerprint: str) -> Served:
        """The newest loaded version for a device fingerprint: the full 64 hex digits, or a prefix
        of at least ``MIN_FINGERPRINT_PREFIX`` (protocol v2 sends the first 8 bytes)."""
        if len(fingerprint) < MIN_FINGERPRINT_PREFIX or not _HEX.fullmatch(fingerprint):
            raise ProtocolError(
                f"bundle {fingerprint!r} is not a device fingerprint: send its 64 lowercase hex digits "
                f"or at least the first {MIN_FINGERPRINT_PREFIX} of them"
            )
        matches = [s for s in self.models.values() if s.bundle.fingerprint.startswith(fingerprint)]
        known = sorted({s.bundle.fingerprint for s in self.models.values()})
        if not matches:
            raise FingerprintMismatch(
                f"payload was made by device half {fingerprint[:16]}..., which no loaded bundle "
                f"accepts (expected one of {known}); update the device bundle or load its cloud half",
                expected=known[0] if len(known) == 1 else ",".join(known),
                got=fingerprint,
            )
        named = sorted({s.bundle.fingerprint for s in matches})
        if len(named) > 1:
            raise FingerprintMismatch(
                f"device fingerprint prefix {fingerprint} names more than one loaded device half ({named}); "
                "send the full fingerprint, or unload one of them",
                expected=",".join(named),
                got=fingerprint,
            )
        return max(matches, key=lambda s: s.bundle.manifest.version)

    async def run(self, served: Served, decoded: Decoded) -> BatchOutcome:
        """Queue checked decoder input on the bundle's batcher and record where the time went."""
        try:
            outcome = await served.batcher.submit(decoded)
        except Overloaded:
            self.metrics.refused.inc()
            raise
        self.metrics.decode.observe(decoded.decode_ms / 1000)
        self.metrics.queue.observe(outcome.queue_ms / 1000)
        self.metrics.compute.observe(outcome.compute_ms / 1000)
        self.metrics.batch_size.observe(outcome.batch_size)
        return outcome

    async def infer_symbols(
        self, served: Served, symbols: npt.NDArray[np.uint8], tasks: list[str] | None
    ) -> BatchOutcome:
        """Raw symbols (B, N, C), already unpacked by a protocol front end, through the batcher."""
        return await self.run(served, served.bundle.decode_symbols(symbols, tasks))

    async def offload(self, samples: int, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` for a request of ``samples`` samples, off the event loop when it is big.

        Entropy decoding is Python (the rANS coder took about 0.3 ms a sample), and so are
        building and packing the answer: at 256 samples that is 100 ms or more during which the loop would
        answer nothing, not even /healthz. Up to ``INLINE_SAMPLES`` it stays on the loop: a
        thread hop (0.1-0.2 ms of loop time, and a wake-up) would cost a single-sample
        request, the common case, more than the work itself.
        """
        if samples <= INLINE_SAMPLES:
            return work(*args)
        return await asyncio.get_running_loop().run_in_executor(self._payload, partial(work, *args))

    async def predict(self, request: PredictRequest) -> PredictResponse:
        """Check, decode, batch, run and answer one request."""
        started = time.perf_counter()
        samples = request.rep.shape[0]
        served = self.for_fingerprint(request.bundle)
        if request.bundle != served.bundle.fingerprint:  # a prefix: the bundle checks the full one
            request = request.model_copy(update={"bundle": served.bundle.fingerprint})
        with served.batcher.expecting():
            decoded = await self.offload(samples, served.bundle.decode, request)
        current = self.for_fingerprint(request.bundle)
        if current is not served:  # swapped while the payload was decoded off the loop
            # The same fingerprint means the same representation: the decoded input serves
            # the new version too; only the tasks are resolved against it.
            decoded = Decoded(decoded.z, current.bundle.resolve_tasks(request.tasks), decoded.decode_ms)
            served = current
        outcome = await self.run(served, decoded)
        return await self.offload(samples, _answer, served, request, decoded, outcome, started)


def _answer(
    served: Served, request: PredictRequest, decoded: Decoded, outcome: BatchOutcome, started: float
) -> PredictResponse:
    manifest = served.bundle.manifest
    predictions = {task: to_predictions(manifest.task(task), out) for task, out in outcome.outputs.items()}
    return PredictResponse(
        id=request.id,
        bundle=manifest.device_fingerprint,
        version=manifest.version,
        predictions=predictions,
        timing=Timing(
            queue_ms=outcome.queue_ms,
            decode_ms=decoded.decode_ms,
            compute_ms=outcome.compute_ms,
            total_ms=(time.perf_counter() - started) * 1000,
        ),
    )
