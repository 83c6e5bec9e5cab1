"""``mode="auto"``: pick split, cloud-only or device-only per request from the client's own history.

The client measures, per request, its own compute, the round trip (POST until parsed), the
server's ``timing.total_ms`` and the bytes each way. From those it keeps exponentially
weighted moving averages (EWMA, weight ``alpha`` on the newest) of::

    rtt_ms          network time of small requests (up + down under SMALL_BYTES): a round trip
    bytes_per_ms    bytes / (network time - rtt) of larger ones: the bandwidth
    per path        device compute ms, server ms, bytes up + down (HTTP headers included)

and per path the network time it took (round trip minus server time). It predicts::

    device   compute
    split    compute + network + server      (encoder here, decoders there)
    cloud    compute + network + server      (compute: resizing and PNG/JPEG)

with ``network`` the path's own EWMA; ``rtt + bytes / bandwidth`` from the link estimates
stands in only while the path has no network time of its own. (A first version predicted
every path from rtt and bandwidth alone; split's answers, 2 kB with a dense map, then
counted as "large", the round trip stayed at its first, handshake-inflated sample, and auto
chose badly. A path's own history needs no such split into two unknowns.)

It takes the smallest. Paths it has not tried yet are tried first, one each; then every
``probe_every``-th request goes to the path tried least recently, so that an estimate
cannot go stale while its path is never chosen (a link that got faster is noticed). A
path whose bandwidth is still unknown (every request so far was small) counts as 1 round
trip plus its bytes at the fastest rate seen, or, before any, as unknown, and is probed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["HEADER_BYTES", "SMALL_BYTES", "Path", "PathChooser", "PathStats"]

Path = Literal["split", "cloud", "device"]
SMALL_BYTES = 4096
"""Requests with fewer bytes up + down than this update the round trip, larger ones the bandwidth."""
HEADER_BYTES = 200
"""HTTP request and response headers, added to the body sizes (about what httpx and uvicorn send)."""


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new


@dataclass
class PathStats:
    """What the client has seen of one path."""

    compute_ms: float | None = None  # on the device
    server_ms: float | None = None  # the server's total_ms (0 for device)
    wire_bytes: float | None = None  # up + down, headers included
    network_ms: float | None = None  # round trip minus server time
    last_used: int = -1  # request number


@dataclass
class PathChooser:
    paths: Sequence[Path]
    alpha: float = 0.3
    probe_every: int = 20
    rtt_ms: float | None = None
    bytes_per_ms: float | None = None
    stats: dict[str, PathStats] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("auto mode needs at least one path of split, cloud, device")
        self.stats = {path: PathStats() for path in self.paths}

    def predicted_ms(self, path: Path) -> float | None:
        """Expected latency of ``path`` now; None while something it needs is unknown."""
        seen = self.stats[path]
        if seen.compute_ms is None:
            return None
        if path == "device":
            return seen.compute_ms
        if seen.server_ms is None or seen.wire_bytes is None or self.rtt_ms is None:
            return None
        if seen.network_ms is not None:
            return seen.compute_ms + seen.network_ms + seen.server_ms
        if self.bytes_per_ms is None:
            if seen.wire_bytes >= SMALL_BYTES:
                return None  # a big request and no bandwidth yet: probe it
            return seen.compute_ms + self.rtt_ms + seen.server_ms
        return seen.compute_ms + self.rtt_ms + seen.wire_bytes / self.bytes_per_ms + seen.server_ms

    def choose(self) -> Path:
        """The path for the next request."""
        self.requests += 1
        unknown = [path for path in self.paths if self.predicted_ms(path) is None]
        if unknown:
            return min(unknown, key=lambda path: self.stats[path].last_used)
        best = min(self.paths, key=lambda path: self.predicted_ms(path) or 0.0)
        others = [path for path in self.paths if path != best]
        if others and self.requests % self.probe_every == 0:
            return min(others, key=lambda path: self.stats[path].last_used)
        return best

    def record(
        self, path: Path, compute_ms: float, roundtrip_ms: float = 0.0, server_ms: float = 0.0,
        up_bytes: int = 0, down_bytes: int = 0,
    ) -> None:
        """What one request on ``path`` cost; ``roundtrip_ms`` is from POST until the answer parsed."""
        seen = self.stats[path]
        seen.last_used = self.requests
        seen.compute_ms = _ewma(seen.compute_ms, compute_ms, self.alpha)
        if path == "device":
            return
        wire = up_bytes + down_bytes + 2 * HEADER_BYTES
        seen.server_ms = _ewma(seen.server_ms, server_ms, self.alpha)
        seen.wire_bytes = _ewma(seen.wire_bytes, wire, self.alpha)
        network_ms = max(roundtrip_ms - server_ms, 0.0)
        seen.network_ms = _ewma(seen.network_ms, network_ms, self.alpha)
        if wire < SMALL_BYTES or self.rtt_ms is None:
            transfer = wire / self.bytes_per_ms if self.bytes_per_ms else 0.0
            self.rtt_ms = _ewma(self.rtt_ms, max(network_ms - transfer, 0.0), self.alpha)
        else:
            # At least a tenth of a millisecond of transfer: a sample cannot claim an infinite rate.
            rate = wire / max(network_ms - self.rtt_ms, 0.1)
            self.bytes_per_ms = _ewma(self.bytes_per_ms, rate, self.alpha)
