"""Background device traffic for tests that change a running server under load."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType

import numpy as np

from device_client import DeviceClient


class Traffic:
    """Threads that keep sending predictions until the block ends; every failure is recorded."""

    def __init__(self, make_client: Callable[[], DeviceClient], images: Sequence[np.ndarray], threads: int = 3) -> None:
        self.make_client = make_client
        self.images = list(images)
        self.versions: list[int] = []  # bundle version that answered each request, in order
        self.failures: list[Exception] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._send) for _ in range(threads)]

    def _send(self) -> None:
        with self.make_client() as client:
            while not self._stop.is_set():
                try:
                    self.versions.append(client.predict(self.images).response.version)
                except Exception as exc:  # noqa: BLE001 - every failure is a test failure
                    self.failures.append(exc)

    def wait_for(self, answers: int) -> None:
        """Until ``answers`` more requests were answered, or one failed."""
        target = len(self.versions) + answers
        while len(self.versions) < target and not self.failures:
            self._stop.wait(0.02)

    def __enter__(self) -> Traffic:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
