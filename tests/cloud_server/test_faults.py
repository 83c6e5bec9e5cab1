"""Faults, with real servers on 127.0.0.1: a crash during a push, one replica of two stopped
under load, and a bounded soak at about 70 % of the saturating rate.

Every load here goes to loopback only, is bounded in requests and time, and stops by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from device_client import DeviceEncoder
from devtune.server_process import ServerProcess
from devtune.tuning_cli import push_bundle
from models.data import make_shapes
from shared.protocol import CONTENT_TYPE, pack_request
from tests.cloud_server.versions import make_version, served_tasks, served_versions

HEADERS = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
SOAK_S = float(os.environ.get("DEVTUNE_SOAK_SECONDS", "60"))
"""Length of the soak (60 s in CI)."""
RSS_TOLERANCE_KB = 24 * 1024
"""How much the resident set may grow over the soak (allocator and cache noise is a few MiB)."""
FD_TOLERANCE = 4
"""How many more open file descriptors the server may hold after the soak than before it."""


def _body(bundle: Path) -> bytes:
    encoder = DeviceEncoder(bundle)
    encoded = encoder.encode(list(make_shapes("test", count=1).images))
    return pack_request(encoder.request(encoded, None, "fault"))


def _process_stats(pid: int) -> tuple[int, int]:
    """(VmRSS in kB, open file descriptors) of a process, from /proc."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


# --- a crash during a push ---------------------------------------------------------------


def test_a_server_killed_during_a_push_restarts_on_the_last_good_state(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "repository"
    shutil.copytree(tiny_bundle, root / "tiny" / "1")
    pushed = make_version(tiny_bundle, tmp_path / "v2", 2, extra_task="extra")
    body = _body(tiny_bundle)
    interrupted = 0
    for delay in (0.02, 0.1, 0.3):
        server = ServerProcess(auth="off", repository=root, poll_seconds=0).start()
        outcome: list[BaseException | None] = []

        def push(url: str = server.url, outcome: list[BaseException | None] = outcome) -> None:
            try:
                push_bundle(pushed, url, timeout=30)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the kill shows as any transport error
                outcome.append(exc)

        pusher = threading.Thread(target=push)
        pusher.start()
        time.sleep(delay)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        pusher.join(timeout=60)
        interrupted += outcome != [None]
        with ServerProcess(auth="off", repository=root, poll_seconds=0) as restarted:  # must start
            versions = served_versions(restarted.url)
            assert versions in ([1], [1, 2]), versions
            if 2 in versions:  # only ever a complete version: installed after its check
                assert "extra" in served_tasks(restarted.url, 2)
            answer = httpx.post(f"{restarted.url}/v1/predict", content=body, headers=HEADERS, timeout=10)
            assert answer.status_code == 200, answer.text
        shutil.rmtree(root / "tiny" / "2", ignore_errors=True)  # the next round pushes it again
    assert interrupted >= 1, "no kill landed during a push: the rounds only tested restarts"
    with ServerProcess(auth="off", repository=root, poll_seconds=0) as server:  # leftovers do not block a push
        assert push_bundle(pushed, server.url)["version"] == 2


# --- one replica of two stopped under load -------------------------------------------------


class RoundRobin:
    """A tiny client-side balancer: request i goes to url i mod n first, and on a connection
    error or 503 to the next url, up to ``attempts`` tries."""

    def __init__(self, urls: list[str], body: bytes, attempts: int = 4) -> None:
        self.urls, self.body, self.attempts = urls, body, attempts
        self.answered = self.lost = self.retried = 0
        self._lock = threading.Lock()
        self._next = 0

    def send(self, client: httpx.Client) -> None:
        with self._lock:
            first, self._next = self._next, self._next + 1
        for attempt in range(self.attempts):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                answer = client.post(f"{url}/v1/predict", content=self.body, headers=HEADERS, timeout=10)
                if answer.status_code == 200:
                    with self._lock:
                        self.answered += 1
                        self.retried += attempt > 0
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02 * (attempt + 1))
        with self._lock:
            self.lost += 1


def _run_threads(count: int, work: Callable[[httpx.Client], None], requests: int) -> None:
    remaining = [requests]
    lock = threading.Lock()

    def loop() -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                work(client)

    threads = [threading.Thread(target=loop) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def test_stopping_one_replica_of_two_under_load_loses_nothing(tiny_bundle: Path) -> None:
    requests = 600
    with ServerProcess(tiny_bundle, auth="off") as a, ServerProcess(tiny_bundle, auth="off") as b:
        balancer = RoundRobin([a.url, b.url], _body(tiny_bundle))
        loader = threading.Thread(target=_run_threads, args=(4, balancer.send, requests))
        loader.start()
        while balancer.answered < requests // 4 and loader.is_alive():
            time.sleep(0.01)
        a.stop()  # SIGTERM: uvicorn drains what it accepted, then refuses connections
        loader.join(timeout=120)
        print(f"{balancer.answered} answered, {balancer.lost} lost, {balancer.retried} retried on the other replica")
    assert balancer.lost == 0 and balancer.answered == requests
    assert balancer.retried > 0  # the stop did land under load


# --- a bounded soak ------------------------------------------------------------------------


def test_a_soak_at_seventy_percent_of_saturation_keeps_memory_and_descriptors_flat(tiny_bundle: Path) -> None:
    body = _body(tiny_bundle)
    with ServerProcess(tiny_bundle, auth="off") as server:
        assert server.process is not None
        pid, url = server.process.pid, server.url
        failures: list[int] = []

        def send(client: httpx.Client) -> None:
            answer = client.post(f"{url}/v1/predict", content=body, headers=HEADERS, timeout=10)
            if answer.status_code != 200:
                failures.append(answer.status_code)

        started = time.monotonic()
        _run_threads(4, send, 600)  # closed loop: the rate this client and server reach together
        saturating = 600 / (time.monotonic() - started)
        rate = 0.7 * saturating

        def paced(seconds: float) -> int:
            """Requests at ``rate`` per second from 2 threads for ``seconds``; returns how many were sent."""
            sent = [0, 0]

            def loop(index: int) -> None:
                with httpx.Client() as client:
                    begin = time.monotonic()
                    while (elapsed := time.monotonic() - begin) < seconds:
                        due = sent[index] / (rate / 2)
                        if due > elapsed:
                            time.sleep(due - elapsed)
                        send(client)
                        sent[index] += 1

            threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=seconds + 60)
            return sum(sent)

        paced(5.0)  # warm: caches, allocator arenas, keep-alive connections
        rss_before, fds_before = _process_stats(pid)
        sent = paced(SOAK_S)
        rss_after, fds_after = _process_stats(pid)
    print(f"saturating {saturating:.0f} req/s; soak {SOAK_S:.0f} s at {rate:.0f} req/s, {sent} sent; "
          f"VmRSS {rss_before} -> {rss_after} kB; fds {fds_before} -> {fds_after}")
    assert not failures, failures[:5]
    assert sent >= 0.8 * rate * SOAK_S, "the soak did not reach its rate"
    assert rss_after - rss_before <= RSS_TOLERANCE_KB
    assert fds_after - fds_before <= FD_TOLERANCE
