"""The device client: encode locally, POST msgpack to the cloud, get typed predictions back.

Connection failures, timeouts and error answers become ``RemoteError`` with a message
that says what happened. With ``retries`` it retries refused (503), bad-gateway and
unreachable attempts with backoff; with device fallback heads in the bundle it answers
those tasks on the device when the cloud cannot be reached. It sends protocol v2, the
compact request (``shared.protocol``); ``protocol=1`` sends the original map, for servers
older than v2.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from device_client.encoder import DeviceEncoder, Encoded, ImageLike
from shared.errors import ProtocolError, RemoteError, ServerUnreachable
from shared.predictions import to_predictions
from shared.protocol import (
    CONTENT_TYPE,
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    PredictResponse,
    Timing,
    pack_request,
    unpack_response,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_TIMEOUT", "DeviceClient", "Result"]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_RETRY_STATUSES = {502, 503, 504}


@dataclass(frozen=True)
class Result:
    """Predictions for one batch, with what it cost to get them."""

    response: PredictResponse
    payload_bytes: int  # HTTP request body size for the whole batch
    encode_ms: float  # on the device: ONNX + quantize + entropy coding
    roundtrip_ms: float  # POST until the answer was parsed

    @property
    def answered_by(self) -> str:
        return self.response.answered_by


class DeviceClient:
    def __init__(
        self,
        bundle: str | Path | DeviceEncoder,
        server: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 0,
        fallback: bool = True,
        transport: httpx.BaseTransport | None = None,
        protocol: int = PROTOCOL_VERSION,
    ) -> None:
        if protocol not in PROTOCOL_VERSIONS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOL_VERSIONS)}, got {protocol!r}")
        self.protocol = protocol
        self.encoder = bundle if isinstance(bundle, DeviceEncoder) else DeviceEncoder(bundle)
        self.server = server.rstrip("/")
        self.retries = retries
        self.fallback = fallback
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=self.server, timeout=timeout, headers=headers, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def predict(
        self, images: Sequence[ImageLike], tasks: Sequence[str] | None = None, request_id: str | None = None
    ) -> Result:
        encoded = self.encoder.encode(images)
        return self.send(encoded, tasks, request_id)

    def send(self, encoded: Encoded, tasks: Sequence[str] | None = None, request_id: str | None = None) -> Result:
        body = pack_request(self.encoder.request(encoded, tasks, request_id, protocol=self.protocol))
        started = time.perf_counter()
        try:
            response = self._post(body)
        except ServerUnreachable:
            if not self._can_fall_back(tasks):
                raise
            response = self._answer_on_device(encoded, tasks)
        return Result(response, len(body), encoded.encode_ms, (time.perf_counter() - started) * 1000)

    def _post(self, body: bytes) -> PredictResponse:
        delay = 0.05
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                answer = self.http.post("/v1/predict", content=body)
            except httpx.TimeoutException as exc:
                if last:
                    raise ServerUnreachable(
                        f"no answer from {self.server} in time ({exc!r}); check the server or raise the timeout"
                    ) from exc
            except httpx.TransportError as exc:
                if last:
                    raise ServerUnreachable(
                        f"cannot reach {self.server} ({exc!r}); is `devtune serve` running there?"
                    ) from exc
            else:
                if answer.status_code == 200:
                    try:
                        return unpack_response(answer.content)
                    except ProtocolError as exc:
                        raise RemoteError(f"the server's answer did not parse: {exc}", 200) from exc
                if answer.status_code not in _RETRY_STATUSES or last:
                    raise _remote_error(answer)
                delay = max(delay, _retry_after(answer))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _can_fall_back(self, tasks: Sequence[str] | None) -> bool:
        if not self.fallback or not self.encoder.heads:
            return False
        wanted = tasks if tasks is not None else self.encoder.manifest.task_names
        return all(task in self.encoder.heads for task in wanted)

    def _answer_on_device(self, encoded: Encoded, tasks: Sequence[str] | None) -> PredictResponse:
        manifest = self.encoder.manifest
        wanted = list(tasks) if tasks is not None else sorted(self.encoder.heads)
        started = time.perf_counter()
        predictions = {
            task: to_predictions(manifest.task(task), self.encoder.run_fallback(task, encoded.symbols))
            for task in wanted
        }
        elapsed = (time.perf_counter() - started) * 1000
        return PredictResponse(
            bundle=manifest.device_fingerprint,
            version=manifest.version,
            predictions=predictions,
            answered_by="device",
            timing=Timing(compute_ms=elapsed, total_ms=elapsed),
        )


def _retry_after(answer: httpx.Response) -> float:
    try:
        return min(float(answer.headers.get("Retry-After", "0")), 5.0)
    except ValueError:
        return 0.0


def _remote_error(answer: httpx.Response) -> RemoteError:
    try:
        body = answer.json()
        error, detail = str(body.get("error")), str(body.get("detail"))
    except ValueError:
        error, detail = "http_error", answer.text[:200]
    return RemoteError(f"server answered {answer.status_code} {error}: {detail}", answer.status_code, error)
