"""Can link emulation run here? One check that names what is missing and what to do.

The link needs root (namespaces, veth, qdiscs), iproute2's ``ip`` and ``tc``, and the
kernel's tbf qdisc. tbf is probed for real, on the loopback device of a throwaway namespace,
because a kernel can ship ``tc`` without the qdisc module (this one lacks netem, for example).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from shared.errors import DeviceTuningError

__all__ = ["LinkUnsupported", "check_link_support", "require_link_support"]

_PROBE_TIMEOUT_S = 10.0


class LinkUnsupported(DeviceTuningError):
    """Link emulation cannot run on this machine; the message says what is missing."""


def _probe_tbf() -> str | None:
    """Add a tbf qdisc to ``lo`` of a private namespace; the host's devices are never touched."""
    name = f"dtlink-probe-{os.getpid()}"
    try:
        created = subprocess.run(
            ["ip", "netns", "add", name],
            check=False,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
        if created.returncode != 0:
            return (
                f"`ip netns add` failed ({created.stderr.strip()}); the kernel or container does not "
                "allow network namespaces: run in a VM or a privileged container"
            )
        added = subprocess.run(
            [
                "tc",
                "-n",
                name,
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "tbf",
                "rate",
                "1mbit",
                "burst",
                "16kb",
                "latency",
                "400ms",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
        if added.returncode != 0:
            return (
                f"the kernel has no tbf qdisc (`tc qdisc add ... tbf` said: {added.stderr.strip()}); "
                "load it with `modprobe sch_tbf` or use a kernel built with CONFIG_NET_SCH_TBF"
            )
        return None
    except subprocess.TimeoutExpired:
        return "`ip`/`tc` did not answer within 10 s; check that iproute2 works here"
    finally:
        subprocess.run(
            ["ip", "netns", "del", name], check=False, capture_output=True, timeout=_PROBE_TIMEOUT_S
        )


def check_link_support() -> str | None:
    """``None`` when link emulation can run here, else the reason it cannot and what to do."""
    if os.name != "posix" or not os.path.isdir("/proc/self/ns"):
        return "link emulation needs Linux network namespaces; run it on Linux"
    if os.geteuid() != 0:
        return "link emulation needs root (network namespaces, veth, tc); run it as root, e.g. with sudo"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed; install iproute2 (e.g. `apt-get install iproute2`)"
    return _probe_tbf()


def require_link_support() -> None:
    """Raise ``LinkUnsupported`` with the reason when link emulation cannot run here."""
    reason = check_link_support()
    if reason is not None:
        raise LinkUnsupported(f"cannot emulate a link: {reason}")
