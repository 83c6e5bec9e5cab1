"""The tbf settings that turn a veth into a link of a given rate, and why they are these.

tbf is a token bucket: tokens arrive at ``rate`` and a packet leaves when the bucket holds
its size. Two numbers besides the rate decide what a benchmark sees:

* ``burst`` (bucket size). A full bucket lets ``burst`` bytes out at line rate, so any
  message smaller than the burst would cross the link in no time at all and a 2 kB
  request would look free. We use one full Ethernet frame plus slack for tc's rounding
  of the bucket to timer ticks: the smallest bucket that still passes every frame (a
  frame larger than the bucket is dropped). A message of N frames then takes (N - 1)
  frame times instead of N: after an idle moment the first frame crosses for free, where
  a real link would serialise it too. That error is at most one frame time per message and
  direction (1.5 ms at 8 Mbit/s, 12 ms at 1 Mbit/s); no smaller bucket can pass a frame.
* ``limit`` (queue length in bytes). Frames that find the bucket empty wait here; a
  full queue drops them, and TCP then waits for a retransmission (at least 200 ms for a
  tail drop), which would measure loss recovery instead of rate. The queue holds one
  second at the rate (at least 256 KiB), so the bounded transfers of a benchmark are
  never dropped. ``Link.counters()`` reports drops, so a run where this did not hold is
  visible rather than silently slow.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError

__all__ = ["FRAME_BYTES", "TbfShape"]

FRAME_BYTES = 1514  # a 1500-byte MTU packet plus its 14-byte Ethernet header, as tbf counts it
_BURST_SLACK_BYTES = 86  # tc stores the bucket as time in ticks; rounding must not cut a frame
_MIN_LIMIT_BYTES = 256 * 1024


@dataclass(frozen=True)
class TbfShape:
    """One direction of the link: a tbf qdisc on the egress of one veth end."""

    rate_bit_s: int  # bits per second on the wire, Ethernet headers included
    burst_bytes: int = FRAME_BYTES + _BURST_SLACK_BYTES  # bucket: one frame (see module docstring)
    queue_s: float = 1.0  # seconds of traffic the queue holds before it drops

    @classmethod
    def for_mbit(cls, bandwidth_mbit: float) -> TbfShape:
        if not bandwidth_mbit > 0:
            raise ConfigError(f"bandwidth_mbit must be > 0, got {bandwidth_mbit}; e.g. 8 for 8 Mbit/s")
        return cls(rate_bit_s=round(bandwidth_mbit * 1_000_000))

    @property
    def limit_bytes(self) -> int:
        return max(round(self.rate_bit_s / 8 * self.queue_s), _MIN_LIMIT_BYTES) + self.burst_bytes

    def tc_args(self, device: str) -> list[str]:
        """``tc`` arguments (after ``tc -n NS``) that install this shape on ``device``."""
        return [
            "qdisc",
            "add",
            "dev",
            device,
            "root",
            "tbf",
            "rate",
            f"{self.rate_bit_s}bit",
            "burst",
            str(self.burst_bytes),
            "limit",
            str(self.limit_bytes),
        ]
