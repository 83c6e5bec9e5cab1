"""Background device traffic for runs that change a server under load (hot add, version swap).

``devtune bench tune`` pushes a tuned bundle while it runs; the tests swap versions and
add tasks under it. Every answer's bundle version and every failure is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

    from device_client import DeviceClient

__all__ = ["Traffic"]


class Traffic:
    """Threads that keep sending predictions until the block ends; every failure is recorded."""

    def __init__(self, make_client: Callable[[], DeviceClient], images: Sequence[np.ndarray], threads: int = 3) -> None:
        self.make_client = make_client
        self.images = list(images)
        self.versions: list[int] = []  # bundle version that answered each request, in order
        self.failures: list[Exception] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def _send(self) -> None:
        try:
            with self.make_client() as client:
                while not self._stop.is_set():
                    try:
                        self.versions.append(client.predict(self.images).response.version)
                    except Exception as exc:  # noqa: BLE001 - every failure is a failure of the run
                        self.failures.append(exc)
        except Exception as exc:  # noqa: BLE001 - a client that cannot even start is one too
            self.failures.append(exc)

    def wait_for(self, answers: int) -> None:
        """Until ``answers`` more requests were answered, or one failed (or every sender stopped)."""
        target = len(self.versions) + answers
        while len(self.versions) < target and not self.failures and any(w.is_alive() for w in self._workers):
            self._stop.wait(0.02)

    def __enter__(self) -> Self:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
