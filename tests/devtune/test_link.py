"""Link emulation: a real shaped link between namespaces (as root, as in CI), and the relay's
delay line and the refusals, which run anywhere."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from devtune.link import Link, LinkUnsupported, check_link_support
from devtune.link.relay import RelayConfig, start_relay
from devtune.link.shaping import FRAME_BYTES
from shared.errors import ConfigError

MBIT = 8.0
RTT_S = 0.040
PROBE_PORT = 9000
BIG = 200_000
# A TCP segment carries 1448 payload bytes (1500 MTU - 20 IP - 32 TCP with timestamps) in a
# 1514-byte frame: the wire time of a payload is its size times this, at the rate.
WIRE_PER_PAYLOAD = FRAME_BYTES / 1448
# The machine is shared with other test runs (2 cores): a process may wait for a core for
# tens of milliseconds. Lower bounds are tight (the link must not be faster than asked),
# upper bounds leave this much room.
SLACK_S = 0.080


@pytest.fixture(scope="module")
def link() -> Iterator[tuple[Link, str, int]]:
    """One 8 Mbit/s, 40 ms link with the probe server in the cloud and a relay to it."""
    reason = check_link_support()
    if reason is not None:
        pytest.skip(reason)
    with Link(bandwidth_mbit=MBIT, rtt_ms=RTT_S * 1000, max_seconds=300) as made:
        server = made.spawn(
            "cloud",
            [
                sys.executable,
                "-m",
                "devtune.link.probe",
                "serve",
                "--port",
                str(PROBE_PORT),
                "--max-seconds",
                "300",
            ],
        )
        made.wait_listening(server, PROBE_PORT, timeout=30)
        host, port = made.forward(PROBE_PORT, timeout=30)
        yield made, host, port


def measure(link: tuple[Link, str, int], up: int, down: int, repeat: int) -> list[float]:
    made, host, port = link
    result = made.run_json(
        "device",
        [
            sys.executable,
            "-m",
            "devtune.link.probe",
            "measure",
            "--host",
            host,
            "--port",
            str(port),
            "--up",
            str(up),
            "--down",
            str(down),
            "--repeat",
            str(repeat),
            "--timeout",
            "30",
        ],
        timeout=60,
    )
    return [float(seconds) for seconds in result["round_s"]]


def test_a_small_request_takes_one_round_trip(link: tuple[Link, str, int]) -> None:
    first, *rest = measure(link, up=100, down=100, repeat=6)
    # The first request also pays the TCP handshake's round trip, as on a real link.
    assert 2 * RTT_S - 0.002 <= first <= 2 * RTT_S + SLACK_S, first
    assert min(rest) >= RTT_S - 0.001, rest  # -1 ms: the event loop's timer may fire that early
    assert statistics.median(rest) <= RTT_S + SLACK_S / 2, rest


@pytest.mark.parametrize(("up", "down"), [(BIG, 100), (100, BIG)], ids=["upload", "download"])
def test_a_transfer_takes_size_over_rate(link: tuple[Link, str, int], up: int, down: int) -> None:
    rounds = measure(link, up=up, down=down, repeat=3)[1:]  # [0] includes the handshake
    wire_s = BIG * WIRE_PER_PAYLOAD * 8 / (MBIT * 1e6)  # 0.209 s for 200 kB at 8 Mbit/s
    # Never faster than the payload alone at the rate (lower bound without header overhead),
    # and not slower than the wire time plus the round trip plus scheduling slack.
    assert min(rounds) >= RTT_S + BIG * 8 / (MBIT * 1e6), rounds
    assert statistics.median(rounds) <= RTT_S + wire_s + SLACK_S, rounds


def test_the_counters_see_the_bytes_sent(link: tuple[Link, str, int]) -> None:
    made, _, _ = link
    before = made.counters()
    measure(link, up=BIG, down=BIG // 2, repeat=2)
    wire = made.counters() - before
    assert wire.up_bytes >= 2 * BIG and wire.down_bytes >= BIG, wire
    # Headers and ACKs on top of the payload, but not a second copy of it.
    assert wire.up_bytes <= 2 * BIG * 1.2, wire
    assert wire.drops == 0, "tbf dropped frames: its queue is too short for this transfer"


def _leftovers(made: Link) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = [*made.namespaces.values(), *made.veths.values()]
    return [name for name in names if name in netns or name in links]


def test_nothing_is_left_after_the_link_closes_even_on_an_error() -> None:
    reason = check_link_support()
    if reason is not None:
        pytest.skip(reason)
    made = Link(bandwidth_mbit=1, rtt_ms=10)
    with pytest.raises(RuntimeError, match="on purpose"), made:
        sleeper = made.spawn("device", ["sleep", "300"])
        assert _leftovers(made) == [*made.namespaces.values()]  # the veths are only inside them
        raise RuntimeError("on purpose")
    assert sleeper.poll() is not None, "a process in the namespace outlived the link"
    assert _leftovers(made) == []


def test_the_relay_delays_each_direction_without_serialising() -> None:
    async def scenario() -> list[float]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
            writer.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        relay = await start_relay(
            RelayConfig("127.0.0.1", 0, "127.0.0.1", target.sockets[0].getsockname()[1], 0.05)
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.sockets[0].getsockname()[1])
        await asyncio.sleep(0.15)  # past the emulated handshake
        sent = []
        for index in range(3):  # 30 ms apart: each is sent before the one before it came back
            sent.append(time.perf_counter())
            writer.write(f"{index}\n".encode())
            await asyncio.sleep(0.03)
        delays = []
        for index in range(3):
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            assert line == f"{index}\n".encode()  # in order
            delays.append(time.perf_counter() - sent[index])
        writer.write_eof()  # the half-close travels through the relay; the echo closes; so does the relay
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # let the relay's and the echo's handlers close their sockets
        for server in (relay, target):
            server.close()
            await server.wait_closed()
        return delays

    delays = asyncio.run(scenario())
    assert all(0.099 <= delay <= 0.1 + SLACK_S for delay in delays), delays


def test_it_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    reason = check_link_support()
    assert reason is not None and "root" in reason
    with pytest.raises(LinkUnsupported, match="needs root"), Link(bandwidth_mbit=8, rtt_ms=40):
        pass


def test_it_refuses_a_rate_that_cannot_work() -> None:
    with pytest.raises(ConfigError, match="bandwidth_mbit must be > 0"):
        Link(bandwidth_mbit=0, rtt_ms=40)


def test_the_public_surface_exists() -> None:
    import devtune.link

    assert sorted(devtune.link.__all__) == devtune.link.__all__
    assert [name for name in devtune.link.__all__ if not hasattr(devtune.link, name)] == []
