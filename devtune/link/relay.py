"""A TCP relay that adds the link's round-trip delay in user space (this kernel has no netem).

Each connection the relay accepts gets a connection to the target and two delay lines, one
per direction. A reader stamps every chunk with its arrival time and queues it; a writer
sends each chunk at ``stamp + one_way`` in arrival order. Reading never waits for writing,
so a stream of chunks is shifted by the delay, not slowed by it, and connections do not
wait for one another. The first upstream bytes are also held for one extra round trip
after the connection is accepted: that is what the TCP handshake costs a real client,
which here connected to a local socket in no time.

What the relay does not emulate: TCP's own reaction to the delay. The connection over the
shaped veth has almost no round-trip time, so slow start ramps up at once; a real 40 ms
link needs a few round trips before a large transfer reaches full rate. Loss is left out
for the same reason: the relay sees a byte stream, not packets, and dropping bytes would
break the stream rather than cost a retransmission.

Run as ``python -m devtune.link.relay --listen HOST:PORT --target HOST:PORT --one-way-ms MS``
(inside the device namespace). It prints ``{"host": ..., "port": ...}`` once it listens,
and stops on its own when its stdin closes (the parent went away) or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["RelayConfig", "main", "start_relay"]

_CHUNK_BYTES = 64 * 1024
_QUEUE_CHUNKS = 256  # at most 16 MiB held per direction before the reader waits (backpressure)


@dataclass(frozen=True)
class RelayConfig:
    """Where the relay listens, where it forwards to, and how long each byte is held."""

    listen_host: str
    listen_port: int  # 0: pick a free port (reported once listening)
    target_host: str
    target_port: int
    one_way_s: float  # delay added in each direction: half the round trip


_Line = asyncio.Queue[tuple[float, bytes | None]]


async def _read_into(reader: asyncio.StreamReader, line: _Line, not_before: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        chunk = await reader.read(_CHUNK_BYTES)
        await line.put((max(loop.time(), not_before), chunk or None))
        if not chunk:
            return


async def _write_from(line: _Line, writer: asyncio.StreamWriter, one_way_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        stamp, chunk = await line.get()
        wait = stamp + one_way_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if chunk is None:
            if writer.can_write_eof():
                writer.write_eof()  # pass the half-close on: HTTP clients may wait for it
            return
        writer.write(chunk)
        await writer.drain()


async def _together(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run ``jobs`` concurrently; when one fails the others are cancelled (Python 3.10 has no TaskGroup)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _direction(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, one_way_s: float, not_before: float
) -> None:
    line: _Line = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
    await _together(_read_into(reader, line, not_before), _write_from(line, writer, one_way_s))


def _no_delay(writer: asyncio.StreamWriter) -> None:
    # Nagle's algorithm would hold small chunks back for an ACK and add its own delay.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _handle(
    config: RelayConfig, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    accepted = asyncio.get_running_loop().time()
    try:
        server_r, server_w = await asyncio.open_connection(config.target_host, config.target_port)
    except OSError:
        client_w.close()
        return
    _no_delay(client_w)
    _no_delay(server_w)
    handshake_done = accepted + 2 * config.one_way_s
    try:
        await _together(
            _direction(client_r, server_w, config.one_way_s, handshake_done),
            _direction(server_r, client_w, config.one_way_s, 0.0),
        )
    except OSError:
        pass  # a reset on either side ends the connection; the other side is closed below
    finally:
        for writer in (client_w, server_w):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def start_relay(config: RelayConfig) -> asyncio.Server:
    """Listen and relay until the returned server is closed (usable in-process, on loopback)."""
    if config.one_way_s < 0:
        raise ValueError(f"one_way_s must be >= 0, got {config.one_way_s}")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(config, reader, writer)

    return await asyncio.start_server(handle, config.listen_host, config.listen_port)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _serve(config: RelayConfig, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns when the parent closes the pipe or dies
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server = await start_relay(config)
    host, port = server.sockets[0].getsockname()[:2]
    print(json.dumps({"host": host, "port": port}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtune.link.relay", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to listen on (port 0: any)")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--one-way-ms", type=float, required=True, help="delay per direction (rtt / 2)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long regardless")
    args = parser.parse_args(argv)
    (listen_host, listen_port), (target_host, target_port) = args.listen, args.target
    config = RelayConfig(listen_host, listen_port, target_host, target_port, one_way_s=args.one_way_ms / 1000)
    asyncio.run(_serve(config, args.max_seconds))


if __name__ == "__main__":
    main()
