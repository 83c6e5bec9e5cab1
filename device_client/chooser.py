"""``mode="auto"``: pick split, cloud-only or device-only per request from the client's own history.

Per request the client reports what the path cost it: its own compute, the round trip (POST
until parsed), the server's ``timing.total_ms`` and the bytes each way. The chooser keeps,
per path, the end-to-end cost (compute + round trip: what the caller waited) of its last
``window`` requests and predicts the next one as their median::

    device   compute                       (encoder and decoders here)
    split    compute + round trip          (encoder here, decoders there)
    cloud    compute + round trip          (compute: resizing and PNG/JPEG; the rest there)

and takes the path with the smallest prediction. Three rules keep the estimates honest:

* **Warm-up.** Each path is tried ``warmup + window`` times first, in turn, least recently
  tried first (``learning_requests``). The first ``warmup`` requests of each are not counted:
  the first one opens the connection (a TCP handshake, one round trip more) and runs ONNX
  sessions that have not run yet (on the device, or the server's image encoder, which loads
  on first use). The next ``window`` fill its median, so that no path is judged by one sample.
* **A median, not a mean.** One slow sample (a handshake, a busy CPU) moves a median of 3 not
  at all; two agreeing samples move it. (A first version kept an EWMA and chose from the
  first sample of each path: split's estimate kept its first, connection-opening sample for
  ~40 requests, and auto stayed on device-only where split was 20-45 % faster.)
* **Probes priced by what they cost.** Every other path is tried again once
  ``ceil((predicted / best - 1) / probe_budget)`` requests have passed since it was last
  tried (at least ``min_every``, at most ``max_every``), so probing one path costs about
  ``probe_budget`` (3 %) of the time: a path 10 % slower than the best is re-measured every
  4th request, one 2x slower every 34th, one 30x slower (cloud-only over a 150 ms round trip
  against a 5 ms device-only) every ~970th, a few seconds of such a stream. When a probe
  comes back faster than the best's prediction, the path is tried again at once, so that a
  link that got faster is followed within two requests and one lucky sample does not switch.
  When the best path slows down (the link got worse), the others' ratios shrink and they are
  probed sooner.

``link_estimate()`` fits round trip and bandwidth to the remote paths' network times (round
trip minus server time) against their bytes: what auto believes of the link, for a report;
the choice itself needs no such model.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["HEADER_BYTES", "LinkEstimate", "Path", "PathChooser", "PathStats"]

Path = Literal["split", "cloud", "device"]
HEADER_BYTES = 200
"""HTTP request and response headers, added to the body sizes (about what httpx and uvicorn send)."""


@dataclass
class PathStats:
    """What the client has seen of one path (warm-up requests counted in ``seen`` only)."""

    cost_ms: deque[float] = field(default_factory=deque)  # end to end, newest last
    network_ms: deque[float] = field(default_factory=deque)  # round trip minus server time
    wire_bytes: float = 0.0  # up + down of the newest request, headers included
    seen: int = 0  # requests recorded, warm-up included
    last_used: int = -1  # request number


@dataclass(frozen=True)
class LinkEstimate:
    """Round trip and bandwidth as auto infers them from its own requests."""

    rtt_ms: float
    bytes_per_ms: float | None  # None: the bigger path was not measurably slower on the wire


@dataclass
class PathChooser:
    paths: Sequence[Path]
    window: int = 3  # counted requests per path the median is taken over
    warmup: int = 1  # first requests per path not counted (connection, first runs)
    probe_budget: float = 0.03  # the share of time probes of one path may cost
    min_every: int = 3  # the most often a path is probed, in requests
    max_every: int = 1000  # the least often
    stats: dict[Path, PathStats] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("auto mode needs at least one path of split, cloud, device")
        if self.window < 1 or self.warmup < 0 or not 0 < self.probe_budget < 1:
            raise ValueError(
                f"window >= 1, warmup >= 0 and 0 < probe_budget < 1, got {self.window}, {self.warmup}, "
                f"{self.probe_budget}"
            )
        self.stats = {path: PathStats(deque(maxlen=self.window), deque(maxlen=self.window)) for path in self.paths}

    @property
    def learning_requests(self) -> int:
        """How many requests the warm-up takes before the first choice: each path warmup + window times."""
        return (self.warmup + self.window) * len(self.paths)

    def predicted_ms(self, path: Path) -> float | None:
        """Expected end-to-end latency of ``path`` now; None until it has a counted request."""
        cost = self.stats[path].cost_ms
        return statistics.median(cost) if cost else None

    def choose(self) -> Path:
        """The path for the next request."""
        self.requests += 1
        unknown = [path for path in self.paths if len(self.stats[path].cost_ms) < self.window]
        if unknown:
            return min(unknown, key=lambda path: self.stats[path].last_used)
        predicted = {path: self.predicted_ms(path) or 0.0 for path in self.paths}
        best = min(self.paths, key=predicted.__getitem__)
        due = [path for path in self.paths if path != best and self._due(path, predicted[path], predicted[best])]
        if due:
            return min(due, key=lambda path: self.stats[path].last_used)
        return best

    def _due(self, path: Path, predicted: float, best: float) -> bool:
        seen = self.stats[path]
        if seen.cost_ms[-1] < best:
            return True  # its newest request beat the best: confirm it (or not) at once
        ratio = predicted / best if best > 0 else math.inf
        every = (ratio - 1) / self.probe_budget if math.isfinite(ratio) else self.max_every
        every = min(max(math.ceil(every), self.min_every), self.max_every)
        return self.requests - seen.last_used >= every

    def record(
        self, path: Path, compute_ms: float, roundtrip_ms: float = 0.0, server_ms: float = 0.0,
        up_bytes: int = 0, down_bytes: int = 0,
    ) -> None:
        """What one request on ``path`` cost; ``roundtrip_ms`` is from POST until the answer parsed."""
        seen = self.stats[path]
        seen.last_used = self.requests
        seen.seen += 1
        if seen.seen <= self.warmup:
            return
        seen.cost_ms.append(compute_ms + roundtrip_ms)
        if path != "device":
            seen.network_ms.append(max(roundtrip_ms - server_ms, 0.0))
            seen.wire_bytes = up_bytes + down_bytes + 2 * HEADER_BYTES

    def link_estimate(self) -> LinkEstimate | None:
        """Round trip and bandwidth fitted to the remote paths' median network time against bytes."""
        points = sorted((stats.wire_bytes, statistics.median(stats.network_ms))
                        for path, stats in self.stats.items() if path != "device" and stats.network_ms)
        if not points:
            return None
        (small_bytes, small_ms), (big_bytes, big_ms) = points[0], points[-1]
        if big_bytes > small_bytes and big_ms > small_ms:
            rate = (big_bytes - small_bytes) / (big_ms - small_ms)
            return LinkEstimate(max(small_ms - small_bytes / rate, 0.0), rate)
        return LinkEstimate(small_ms, None)
