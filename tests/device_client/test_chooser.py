"""auto's choices on fake timings: it tries each path, follows the faster one, and is not fooled by outliers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from device_client import PathChooser
from device_client.chooser import Path

PATHS: list[Path] = ["split", "cloud", "device"]
Costs = Callable[[Path, int], float]  # (path, request number) -> what that request costs end to end, ms


def drive(chooser: PathChooser, costs: Costs, requests: int) -> list[Path]:
    """Let ``chooser`` pick ``requests`` times; each pick costs what ``costs`` says (all of it on the wire
    for remote paths: 1 ms on the device, the rest round trip)."""
    chosen: list[Path] = []
    for _ in range(requests):
        path = chooser.choose()
        cost = costs(path, chooser.requests)
        chosen.append(path)
        if path == "device":
            chooser.record(path, cost)
        else:
            chooser.record(path, 1.0, cost - 1.0, 0.5, 200, 2000)
    return chosen


def fixed(**ms: float) -> Costs:
    return lambda path, _: ms[path]


def test_each_path_is_tried_four_times_before_one_is_chosen() -> None:
    chooser = PathChooser(PATHS)
    assert chooser.learning_requests == 12
    first = drive(chooser, fixed(split=20, cloud=100, device=30), 12)
    # The first request of each is its warm-up (a new connection, first runs); the next 3 count.
    assert first == PATHS * 4
    assert [chooser.predicted_ms(path) for path in PATHS] == [20, 100, 30]
    assert drive(chooser, fixed(split=20, cloud=100, device=30), 1) == ["split"]


def test_it_switches_to_split_when_split_is_measurably_faster() -> None:
    costs = fixed(split=20, cloud=100, device=30)
    chosen = drive(PathChooser(PATHS), costs, 212)[12:]
    assert chosen.count("split") >= 175, chosen
    # device (1.5x) is re-measured every 17th request, cloud (5x) every 134th: 3 % of the time each
    assert sum(costs(path, 0) for path in chosen) / (20 * len(chosen)) < 1.0 + 2 * 0.03


def test_it_stays_on_device_when_device_is_fastest_and_rarely_probes_what_is_far_slower() -> None:
    chosen = drive(PathChooser(PATHS), fixed(split=160, cloud=240, device=5), 512)
    # split is 32x the best: probing it costs 3 % of the time only if it is tried every ~1000th request
    assert chosen[12:] == ["device"] * 500


def test_a_handshake_outlier_is_ignored() -> None:
    # split's first request opens the connection and its second sees a cold server: both slow.
    def costs(path: Path, request: int) -> float:
        if path == "split":
            return 300.0 if request <= 4 else 20.0
        return {"cloud": 100.0, "device": 30.0}[path]

    chosen = drive(PathChooser(PATHS), costs, 100)
    assert chosen[12:].count("split") >= 80, chosen


def test_one_slow_request_does_not_move_it_off_the_best_path() -> None:
    chooser = PathChooser(PATHS)
    drive(chooser, fixed(split=20, cloud=100, device=30), 30)
    drive(chooser, fixed(split=500, cloud=100, device=30), 1)  # a busy CPU, once
    assert drive(chooser, fixed(split=20, cloud=100, device=30), 1) == ["split"]


def test_a_lucky_probe_is_checked_before_it_switches() -> None:
    chooser = PathChooser(PATHS)
    before = drive(chooser, fixed(split=40, cloud=100, device=30), 40)
    assert before[-10:].count("device") >= 9
    while chooser.choose() != "split":  # run up to split's next probe, which comes back fast
        chooser.record("device", 30.0)
    chooser.record("split", 1.0, 9.0, 0.5, 200, 2000)
    assert drive(chooser, fixed(split=40, cloud=100, device=30), 3) == ["split", "device", "device"]


def test_it_follows_the_link_when_it_gets_worse_and_better_again() -> None:
    chooser = PathChooser(PATHS)
    good = fixed(split=20, cloud=100, device=30)
    assert drive(chooser, good, 40)[-10:].count("split") >= 9
    worse = drive(chooser, fixed(split=80, cloud=400, device=30), 40)  # the link slows 4x
    assert worse.index("device") <= 2 and worse[5:].count("device") >= 33, worse
    # Better again: split's last samples say 80 ms, 2.7x device's 30, so it is probed within
    # (2.7 - 1) / 0.03 = 57 requests, confirmed by one more, and taken from then on.
    better = drive(chooser, good, 80)
    assert "split" in better[:60] and better[-15:].count("split") >= 14, better


def test_probes_cost_about_the_budget() -> None:
    costs = fixed(split=10, cloud=15, device=8)
    chooser = PathChooser(PATHS)
    chosen = drive(chooser, costs, 2012)[12:]
    spent = sum(costs(path, 0) for path in chosen)
    # split is 25 % slower (probed every 9th request), cloud 88 % (every 30th): about 3 % each
    assert 1.0 < spent / (8 * len(chosen)) < 1.0 + 2 * 0.03 + 0.01
    assert chosen.count("split") >= 100 and chosen.count("cloud") >= 30


def test_it_estimates_the_link_from_its_own_requests() -> None:
    chooser = PathChooser(["split", "cloud"])
    rtt_ms, bytes_per_ms = 50.0, 125.0  # 1 Mbit/s
    sizes = {"split": (200, 1900), "cloud": (10_400, 300)}
    for _ in range(10):
        path = chooser.choose()
        up, down = sizes[path]
        wire = up + down + 400
        chooser.record(path, 2.0, rtt_ms + wire / bytes_per_ms + 3.0, 3.0, up, down)
    estimate = chooser.link_estimate()
    assert estimate is not None and estimate.bytes_per_ms is not None
    assert estimate.rtt_ms == pytest.approx(rtt_ms) and estimate.bytes_per_ms == pytest.approx(bytes_per_ms)


def feed(chooser: PathChooser, link_ms: float, bytes_per_ms: float, device: dict[str, float],
         sizes: dict[str, int], requests: int = 60) -> list[Path]:
    """Drive the chooser with a synthetic link: round trip ``link_ms``, rate ``bytes_per_ms``."""
    chosen = []
    for _ in range(requests):
        path = chooser.choose()
        chosen.append(path)
        if path == "device":
            chooser.record(path, device[path])
        else:
            wire = sizes[path] + 400 + 200
            chooser.record(path, device[path], link_ms + wire / bytes_per_ms + 1.0, 1.0, sizes[path], 200)
    return chosen


def test_the_chooser_follows_the_link() -> None:
    sizes = {"split": 150, "cloud": 9000}
    slow_device = {"split": 2.0, "cloud": 0.5, "device": 500.0}
    # 1 Mbit/s = 125 bytes/ms: 9 kB of PNG cost 72 ms more than the payload; split wins.
    slow = feed(PathChooser(["split", "cloud", "device"]), 50, 125, slow_device, sizes)
    assert slow[12:].count("split") >= 45, slow
    # A device that takes 40 ms to encode on a 100 Mbit/s link: sending the image wins.
    weak = {"split": 40.0, "cloud": 0.5, "device": 500.0}
    fast = feed(PathChooser(["split", "cloud", "device"]), 10, 12_500, weak, sizes)
    assert fast[12:].count("cloud") >= 45, fast
    # With a device that runs everything in 3 ms, nothing beats staying home.
    home = feed(PathChooser(["split", "cloud", "device"]), 10, 12_500, {**weak, "device": 3.0}, sizes)
    assert home[12:].count("device") >= 45, home


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one path"):
        PathChooser([])
    with pytest.raises(ValueError, match="probe_budget"):
        PathChooser(PATHS, probe_budget=0.0)
