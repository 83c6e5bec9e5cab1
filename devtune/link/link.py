"""``Link``: two namespaces joined by a shaped veth, a delay relay, and helpers to run code in them."""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

from typing_extensions import Self

from devtune.link import netns
from devtune.link.counters import LinkCounters, read_counters
from devtune.link.shaping import TbfShape
from devtune.link.support import LinkUnsupported, require_link_support
from shared.errors import ConfigError

__all__ = ["Link", "Role"]

Role = Literal["cloud", "device"]
_runs = itertools.count()


def _subnet(index: int) -> tuple[str, str]:
    """A /30 in 10.255.0.0/16 for run ``index``: (cloud address, device address)."""
    slot = index % (1 << 14)  # 16384 /30s in a /16: 256 third octets x 64 blocks of 4
    third, network = slot >> 6, (slot & 63) * 4
    return f"10.255.{third}.{network + 1}", f"10.255.{third}.{network + 2}"


class Link:
    """An emulated link of ``bandwidth_mbit`` each way and ``rtt_ms`` round trip, while entered.

    Usage (as root)::

        with Link(bandwidth_mbit=8, rtt_ms=40) as link:
            server = link.spawn("cloud", ["python", "-m", "cloud_server"], env=...)
            link.wait_listening(server, 8000)
            host, port = link.forward(8000)  # the relay; reachable from the device namespace
            result = link.run_json("device", ["python", "-m", "my.bench", f"http://{host}:{port}"])
            wire = link.counters()

    Leaving the block kills every process in both namespaces and deletes them (and with
    them the veth), also on an exception or Ctrl-C.
    """

    def __init__(self, bandwidth_mbit: float, rtt_ms: float, max_seconds: float = 3600.0) -> None:
        if not rtt_ms >= 0:
            raise ConfigError(f"rtt_ms must be >= 0, got {rtt_ms}; e.g. 40 for a 40 ms round trip")
        self.shape = TbfShape.for_mbit(bandwidth_mbit)
        self.rtt_ms = rtt_ms
        self.max_seconds = max_seconds  # the relay stops by itself after this long
        run = next(_runs)
        pid = os.getpid()
        self.namespaces: dict[Role, str] = {
            role: f"{netns.PREFIX}{pid}-{run}-{role}" for role in ("cloud", "device")
        }
        self.veths: dict[Role, str] = {"cloud": f"dtc{pid}-{run}", "device": f"dtd{pid}-{run}"}
        self.addresses: dict[Role, str] = dict(zip(("cloud", "device"), _subnet(pid * 8 + run), strict=True))
        self._processes: list[subprocess.Popen[Any]] = []
        self._entered = False

    @property
    def cloud_address(self) -> str:
        """The cloud end's address; servers in the cloud namespace bind here (or 0.0.0.0)."""
        return self.addresses["cloud"]

    def __enter__(self) -> Self:
        require_link_support()
        netns.remove_stale()
        self._entered = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        cloud, device = self.namespaces["cloud"], self.namespaces["device"]
        for name in (cloud, device):
            netns.create(name)
        # Both ends are created inside their namespaces: the host never sees the veth.
        netns.iproute(
            [
                "ip",
                "link",
                "add",
                self.veths["cloud"],
                "netns",
                cloud,
                "type",
                "veth",
                "peer",
                "name",
                self.veths["device"],
                "netns",
                device,
            ]
        )
        for role in ("cloud", "device"):
            name, veth = self.namespaces[role], self.veths[role]
            netns.iproute(["ip", "-n", name, "addr", "add", f"{self.addresses[role]}/30", "dev", veth])
            netns.iproute(["tc", "-n", name, *self.shape.tc_args(veth)])  # shapes this end's egress
            netns.iproute(["ip", "-n", name, "link", "set", veth, "up"])

    def close(self) -> None:
        """Stop everything and delete both namespaces; safe to call twice."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        self._processes.clear()
        if self._entered:
            for name in self.namespaces.values():
                netns.destroy(name)
            self._entered = False

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _require_entered(self) -> None:
        if not self._entered:
            raise LinkUnsupported("the link is not up; use it inside `with Link(...) as link:`")

    def spawn(self, role: Role, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the ``role`` namespace; it is killed when the link closes."""
        self._require_entered()
        process: subprocess.Popen[Any] = subprocess.Popen(
            netns.exec_argv(self.namespaces[role], argv), **popen
        )
        self._processes.append(process)
        return process

    def wait_listening(self, process: subprocess.Popen[Any], port: int, timeout: float = 30.0) -> None:
        """Wait until ``process`` (started by ``spawn``) listens on TCP ``port`` in its namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LinkUnsupported(
                    f"{process.args!r} exited with code {process.returncode} before it listened"
                )
            if netns.is_listening(process.pid, port):
                return
            time.sleep(0.05)
        raise LinkUnsupported(
            f"nothing listened on port {port} within {timeout:.0f} s; check the server's log"
        )

    def forward(self, port: int, timeout: float = 30.0) -> tuple[str, int]:
        """Start a delay relay in the device namespace to the cloud's ``port``; its (host, port) there."""
        relay = self.spawn(
            "device",
            [
                sys.executable,
                "-m",
                "devtune.link.relay",
                "--listen",
                "127.0.0.1:0",
                "--target",
                f"{self.cloud_address}:{port}",
                "--one-way-ms",
                str(self.rtt_ms / 2),
                "--max-seconds",
                str(self.max_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert relay.stdout is not None  # for mypy: stdout=PIPE above
        ready, _, _ = select.select([relay.stdout], [], [], timeout)
        line = relay.stdout.readline() if ready else ""
        if not line:
            raise LinkUnsupported(
                f"the relay did not start within {timeout:.0f} s (exit code {relay.poll()})"
            )
        where = json.loads(line)
        return str(where["host"]), int(where["port"])

    def run(
        self, role: Role, argv: Sequence[str], timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside the ``role`` namespace (killed after ``timeout``)."""
        self._require_entered()
        return subprocess.run(
            netns.exec_argv(self.namespaces[role], argv),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_json(self, role: Role, argv: Sequence[str], timeout: float = 120.0) -> Any:
        """Run ``argv`` in ``role``'s namespace and parse the JSON it prints as its last line."""
        done = self.run(role, argv, timeout)
        if done.returncode != 0:
            raise LinkUnsupported(
                f"{list(argv)!r} exited with code {done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def counters(self) -> LinkCounters:
        """The link's byte and drop counters now; subtract two readings for one run's traffic."""
        self._require_entered()
        return read_counters(
            self.namespaces["device"], self.veths["device"], self.namespaces["cloud"], self.veths["cloud"]
        )
