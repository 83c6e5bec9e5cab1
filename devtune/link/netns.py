"""Network namespaces: create, run things inside, tear down (killing what still runs there).

Everything goes through iproute2 (``ip netns``, ``ip -n NS``, ``tc -n NS``) in child
processes: ``setns`` from a Python thread would move the whole interpreter's sockets
between namespaces, a child process moves only itself. Namespace names carry the creating
pid, so parallel runs never collide and ``remove_stale`` can tell leftovers of dead runs
(a SIGKILLed benchmark cannot clean up after itself) from namespaces still in use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence

from devtune.link.support import LinkUnsupported

__all__ = [
    "PREFIX",
    "create",
    "destroy",
    "exec_argv",
    "iproute",
    "is_listening",
    "listing",
    "pids",
    "remove_stale",
]

PREFIX = "dtlink-"  # every namespace this package makes is "dtlink-<pid>-<n>-<role>"
_TIMEOUT_S = 15.0


def iproute(argv: Sequence[str], check: bool = True) -> str:
    """Run an ``ip``/``tc`` command and return its stdout; a failure names the command."""
    try:
        done = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise LinkUnsupported(f"`{' '.join(argv)}` did not finish within {_TIMEOUT_S:.0f} s") from exc
    if check and done.returncode != 0:
        raise LinkUnsupported(
            f"`{' '.join(argv)}` failed: {done.stderr.strip()}; check `check_link_support()` and run as root"
        )
    return done.stdout


def create(name: str) -> None:
    """A new namespace with its loopback up (so servers in it can also bind 127.0.0.1)."""
    iproute(["ip", "netns", "add", name])
    iproute(["ip", "-n", name, "link", "set", "lo", "up"])


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]


def pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (any user, any parent)."""
    out = iproute(["ip", "netns", "pids", name], check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def _kill_all(name: str, grace_s: float) -> None:
    # A namespace lives on while a process is inside it, and so does its veth end.
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        alive = pids(name)
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = pids(name)
        if not alive:
            return


def destroy(name: str, grace_s: float = 3.0) -> None:
    """Kill what runs in ``name`` and delete it; a namespace that is already gone is fine."""
    _kill_all(name, grace_s)
    iproute(["ip", "netns", "del", name], check=False)


def listing() -> list[str]:
    return [line.split()[0] for line in iproute(["ip", "netns", "list"], check=False).splitlines() if line]


def remove_stale() -> list[str]:
    """Delete namespaces of this package whose creating process has died; returns their names."""
    removed = []
    for name in listing():
        owner = name.removeprefix(PREFIX).split("-")[0]
        if name.startswith(PREFIX) and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            destroy(name, grace_s=1.0)
            removed.append(name)
    return removed


def is_listening(pid: int, port: int) -> bool:
    """Whether process ``pid``'s namespace has a TCP socket listening on ``port``.

    ``/proc/PID/net/tcp`` shows the namespace of PID, so this looks inside a namespace
    without starting a process there.
    """
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as rows:
                next(rows, None)
                for row in rows:
                    local, state = row.split()[1], row.split()[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        return True
        except (FileNotFoundError, ProcessLookupError):
            return False
    return False
