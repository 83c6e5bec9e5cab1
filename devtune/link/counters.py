"""Bytes on the wire, read from the link itself: the device veth's counters and tbf's drops.

A benchmark takes ``Link.counters()`` before and after its requests and reports the
difference, so the bytes it quotes are what crossed the veth (IP, TCP and Ethernet
headers, handshakes and ACKs included), not a sum of payload sizes.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass
from typing import Any

from devtune.link.netns import iproute

__all__ = ["LinkCounters", "read_counters"]


@dataclass(frozen=True)
class LinkCounters:
    """Cumulative counts at the device end of the veth, since the link was made."""

    up_bytes: int  # device -> cloud: bytes the device end transmitted
    down_bytes: int  # cloud -> device: bytes the device end received
    up_packets: int
    down_packets: int
    drops: int  # frames tbf dropped in either direction (its queue was full); 0 in a valid run
    up_retransmits: int = 0  # TCP segments the device namespace sent again (each crosses the link again)
    down_retransmits: int = 0  # TCP segments the cloud namespace sent again

    def __add__(self, other: LinkCounters) -> LinkCounters:
        return LinkCounters(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __sub__(self, before: LinkCounters) -> LinkCounters:
        return LinkCounters(*(a - b for a, b in zip(astuple(self), astuple(before), strict=True)))


def _tbf_drops(namespace: str, device: str) -> int:
    qdiscs: list[dict[str, Any]] = json.loads(
        iproute(["tc", "-n", namespace, "-s", "-j", "qdisc", "show", "dev", device])
    )
    return sum(int(q.get("drops", 0)) for q in qdiscs if q.get("kind") == "tbf")


def _tcp_retransmits(namespace: str) -> int:
    """TCP segments sent again in ``namespace`` since it was made (RetransSegs of its /proc/net/snmp)."""
    lines = [line.split() for line in iproute(["ip", "netns", "exec", namespace, "cat", "/proc/net/snmp"]).splitlines()
             if line.startswith("Tcp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RetransSegs")])


def read_counters(device_ns: str, device_veth: str, cloud_ns: str, cloud_veth: str) -> LinkCounters:
    """Read the counters now (``ip -s -j link`` inside the device namespace)."""
    links: list[dict[str, Any]] = json.loads(
        iproute(["ip", "-n", device_ns, "-s", "-j", "link", "show", "dev", device_veth])
    )
    stats = links[0]["stats64"]
    return LinkCounters(
        up_bytes=int(stats["tx"]["bytes"]),
        down_bytes=int(stats["rx"]["bytes"]),
        up_packets=int(stats["tx"]["packets"]),
        down_packets=int(stats["rx"]["packets"]),
        drops=_tbf_drops(device_ns, device_veth) + _tbf_drops(cloud_ns, cloud_veth),
        up_retransmits=_tcp_retransmits(device_ns),
        down_retransmits=_tcp_retransmits(cloud_ns),
    )
