"""What the load generator sends, and the two clients that send it: one request, one answer.

    raw     keep-alive HTTP/1.1 on asyncio streams, each request built to the byte before
            the clock starts
    httpx   one ``httpx.AsyncClient``, as a cross-check

Either raises ``Lost`` when no answer came (a timeout, a refused or broken connection).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import httpx

__all__ = ["CLIENTS", "Client", "Lost", "Pool", "Workload", "open_pool"]

Client = Literal["raw", "httpx"]
CLIENTS: tuple[Client, ...] = ("raw", "httpx")
_IDLE_S = 4.0  # reopen a connection idle this long: uvicorn closes idle ones after 5 s
_T = TypeVar("_T")


@dataclass(frozen=True)
class Workload:
    """What to send: one URL, its headers, and pre-encoded bodies replayed round robin."""

    url: str
    bodies: Sequence[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bodies:
            raise ValueError("a workload needs at least one request body; encode some samples first")
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http://host:port/path, not {self.url!r}")

    def requests(self) -> list[bytes]:
        """Each body as a complete HTTP/1.1 request, headers and all."""
        parts = urlsplit(self.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"Host: {parts.netloc}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        head = f"POST {target or '/'} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)
        return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body for body in self.bodies]



class Lost(Exception):
    """No answer: a timeout, a refused or broken connection."""


async def _within(timeout: float, work: Awaitable[_T]) -> _T:
    if sys.version_info >= (3, 11):  # a deadline on the running task, no extra task per request
        async with asyncio.timeout(timeout):
            return await work
    return await asyncio.wait_for(work, timeout)


class _Connection:
    """One keep-alive HTTP/1.1 connection: write a pre-built request, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """(status, whether a Retry-After header came) of one request."""
        self.reusable = False  # until the whole answer has been read
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            await self.reader.readexactly(int(head[at + 17 : head.index(b"\r\n", at + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in head:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")  # no trailers
        else:
            raise Lost("answer without Content-Length or chunked encoding")
        self.used = time.monotonic()
        self.reusable = b"\r\nconnection: close" not in head
        return status, b"\r\nretry-after:" in head

    def close(self) -> None:
        self.writer.close()


class _RawPool:
    """At most ``size`` connections to one server, reused last-in first-out."""

    def __init__(self, workload: Workload, size: int, timeout: float) -> None:
        parts = urlsplit(workload.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.requests = workload.requests()
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def post(self, i: int) -> tuple[int, bool]:
        try:
            return await _within(self.timeout, self._post(self.requests[i % len(self.requests)]))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError) as exc:
            raise Lost(repr(exc)) from exc

    async def _post(self, request: bytes) -> tuple[int, bool]:
        async with self._slots:  # waiting for a connection counts against the timeout
            connection = None
            while self._idle and connection is None:
                connection = self._idle.pop()
                if time.monotonic() - connection.used > _IDLE_S:
                    connection.close()
                    connection = None
            connection = connection or await _Connection.open(self.host, self.port)
            try:
                answer = await connection.exchange(request)
            finally:
                if connection.reusable:
                    self._idle.append(connection)
                else:
                    connection.close()
            return answer

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class _HttpxPool:
    """The same, through one ``httpx.AsyncClient``."""

    def __init__(self, workload: Workload, size: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        # the pool wait counts against the timeout too
        self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout), trust_env=False)
        self.workload = workload

    async def post(self, i: int) -> tuple[int, bool]:
        bodies = self.workload.bodies
        try:
            answer = await self.client.post(self.workload.url, content=bodies[i % len(bodies)],
                                            headers=self.workload.headers)
        except httpx.HTTPError as exc:
            raise Lost(repr(exc)) from exc
        return answer.status_code, "retry-after" in answer.headers

    async def aclose(self) -> None:
        await self.client.aclose()


Pool = _RawPool | _HttpxPool


def open_pool(client: Client, workload: Workload, size: int, timeout: float) -> Pool:
    """A pool of at most ``size`` connections of the ``client`` kind; ``post(i)`` sends body ``i``."""
    if client == "raw":
        return _RawPool(workload, size, timeout)
    if client == "httpx":
        return _HttpxPool(workload, size, timeout)
    raise ValueError(f"unknown client {client!r}; choose one of {CLIENTS}")
