"""A minimal request/response pair to check a link: ``serve`` in the cloud, ``measure`` on the device.

The protocol is one line ``"<up> <down>\\n"`` followed by ``up`` bytes; the server answers
with ``down`` bytes once it has read them all. ``measure`` opens one connection (timed on
its own: the handshake's round trip) and then times each request from its first byte sent
to the last byte of its answer, printing one JSON object. Used by the link tests and as a
calibration step before a benchmark; imports nothing heavy, so it starts fast.

    python -m devtune.link.probe serve --host 0.0.0.0 --port 9000 [--max-seconds 600]
    python -m devtune.link.probe measure --host H --port P --up 200000 --down 100 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time

__all__ = ["main", "measure", "serve"]

_CHUNK_BYTES = 64 * 1024


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
        while header := await reader.readline():
            up, down = (int(word) for word in header.split())
            await reader.readexactly(up)
            writer.write(b"\0" * down)
            await writer.drain()
    writer.close()


async def serve(host: str, port: int, max_seconds: float) -> None:
    """Answer probe requests for at most ``max_seconds`` (then stop by itself)."""
    server = await asyncio.start_server(_answer, host, port)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.serve_forever(), timeout=max_seconds)


def measure(host: str, port: int, up: int, down: int, repeat: int, timeout: float) -> dict[str, object]:
    """Seconds to connect and, per request, from first byte sent to last byte received."""
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect_s = time.perf_counter() - start
        rounds = []
        for _ in range(repeat):
            begin = time.perf_counter()
            sock.sendall(f"{up} {down}\n".encode() + b"\0" * up)
            remaining = down
            while remaining:
                chunk = sock.recv(min(remaining, _CHUNK_BYTES))
                if not chunk:
                    raise ConnectionError(
                        f"the probe server closed with {remaining} bytes of the answer missing"
                    )
                remaining -= len(chunk)
            rounds.append(time.perf_counter() - begin)
    return {"connect_s": connect_s, "round_s": rounds, "up": up, "down": down}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtune.link.probe", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    served = sub.add_parser("serve", help="answer probe requests")
    served.add_argument("--host", default="0.0.0.0")
    served.add_argument("--port", type=int, required=True)
    served.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long regardless")
    measured = sub.add_parser("measure", help="time requests and print JSON")
    measured.add_argument("--host", required=True)
    measured.add_argument("--port", type=int, required=True)
    measured.add_argument("--up", type=int, default=100, help="bytes sent per request")
    measured.add_argument("--down", type=int, default=100, help="bytes answered per request")
    measured.add_argument("--repeat", type=int, default=5, help="requests on the one connection")
    measured.add_argument("--timeout", type=float, default=30.0, help="socket timeout, seconds")
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args.host, args.port, args.max_seconds))
    else:
        print(json.dumps(measure(args.host, args.port, args.up, args.down, args.repeat, args.timeout)))


if __name__ == "__main__":
    main()
