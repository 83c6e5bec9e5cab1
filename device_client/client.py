"""The device client: encode locally, POST msgpack to the cloud, get typed predictions back.

Connection failures, timeouts and error answers become ``RemoteError`` with a message
that says what happened. With ``retries`` it retries refused (503), bad-gateway and
unreachable attempts with backoff; with device fallback heads in the bundle it answers
those tasks on the device when the cloud cannot be reached. It sends protocol v2, the
compact request (``shared.protocol``); ``protocol=1`` sends the original map, for servers
older than v2.

``mode`` says where the parts run:

    split   (default) encoder here, payload over the wire, decoders in the cloud
    cloud   the image (PNG, or JPEG at ``jpeg_quality``) over the wire to /v1/predict/image;
            the server runs the bundle's encoder too, for devices too weak to run it
    device  encoder and the bundle's cloud decoders here (the bundle dir must hold cloud/)
    auto    one of those per request, from estimates of the link (``chooser.PathChooser``)

``Result.path``, ``encoder_at`` and ``decoders_at`` say where each part of an answer ran.

A text bundle takes strings (``predict(["a sentence", ...])``) along the split path: each
text is tokenized and encoded here and sent as its own request (its real tokens only), and
the answers come back as one ``Result``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

from device_client.chooser import Path as PathName
from device_client.chooser import PathChooser
from device_client.decoders import LocalDecoders
from device_client.encoder import DeviceEncoder, Encoded, ImageLike
from shared.errors import BundleError, ConfigError, ProtocolError, RemoteError, ServerUnreachable
from shared.images import ImageFormat, encode_image, load_rgb
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

__all__ = ["DEFAULT_TIMEOUT", "MODES", "DeviceClient", "Mode", "Result"]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_RETRY_STATUSES = {502, 503, 504}
Mode = Literal["split", "cloud", "device", "auto"]
MODES: tuple[Mode, ...] = ("split", "cloud", "device", "auto")
IDLE_CONNECTION_S = 4.0  # under the server's keep-alive (uvicorn's default: 5 s)
_IMAGE_TYPES: dict[ImageFormat, str] = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class Result:
    """Predictions for one batch, with what it cost to get them."""

    response: PredictResponse
    payload_bytes: int  # HTTP request body size for the whole batch (0 on the device)
    encode_ms: float  # on the device: ONNX + quantize + entropy coding (cloud: PNG/JPEG; device: all of it)
    roundtrip_ms: float  # POST until the answer was parsed (0 on the device)
    path: PathName = "split"  # the path this answer took
    answer_bytes: int = 0  # HTTP response body size

    @property
    def answered_by(self) -> str:
        return self.response.answered_by

    @property
    def encoder_at(self) -> Literal["device", "cloud"]:
        """Where the encoder ran."""
        return "cloud" if self.path == "cloud" else "device"

    @property
    def decoders_at(self) -> Literal["device", "cloud"]:
        """Where the task decoders (or, on a fallback, the device heads) ran."""
        return "device" if self.response.answered_by == "device" else "cloud"


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
        mode: Mode = "split",
        image_format: ImageFormat = "PNG",
        jpeg_quality: int = 75,
        threads: int = 0,
    ) -> None:
        if protocol not in PROTOCOL_VERSIONS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOL_VERSIONS)}, got {protocol!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if image_format not in _IMAGE_TYPES or not 1 <= jpeg_quality <= 95:
            raise ConfigError(
                f"cloud-only sends PNG or JPEG at quality 1..95, got {image_format!r} quality {jpeg_quality}"
            )
        self.protocol = protocol
        self.mode = mode
        self.image_format: ImageFormat = image_format
        self.jpeg_quality = jpeg_quality
        self.threads = threads  # ONNX Runtime threads per device session (0: its default, one per core)
        self.encoder = bundle if isinstance(bundle, DeviceEncoder) else DeviceEncoder(bundle, threads=threads)
        if self.encoder.is_text and mode != "split":
            raise ConfigError(f"bundle {self.encoder.manifest.name} takes text, which runs split only: the "
                              f"device half here, the trunk and heads in the cloud; use mode='split', not {mode!r}")
        self.decoders: LocalDecoders | None = None
        if mode in ("device", "auto"):
            try:
                self.decoders = LocalDecoders(self.encoder.bundle_dir, self.encoder.manifest, threads)
            except BundleError:
                if mode == "device":
                    raise
        paths: list[PathName] = ["split", "cloud"]
        if self.decoders is not None:
            paths.append("device")
        self.chooser = PathChooser(paths) if mode == "auto" else None
        self.server = server.rstrip("/")
        self.retries = retries
        self.fallback = fallback
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # Drop an idle connection before the server does (uvicorn closes one after 5 s): a request
        # sent on it just as the server's close is on its way back fails with "Server disconnected".
        self.http = httpx.Client(base_url=self.server, timeout=timeout, headers=headers, transport=transport,
                                 limits=httpx.Limits(keepalive_expiry=IDLE_CONNECTION_S))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def predict(
        self, images: Sequence[ImageLike], tasks: Sequence[str] | None = None, request_id: str | None = None
    ) -> Result:
        """Predictions for ``images`` along this client's mode (auto: the path it expects fastest);
        for a text bundle, ``images`` are strings."""
        if self.encoder.is_text:
            return self.predict_texts(images, tasks, request_id)  # type: ignore[arg-type]
        path: PathName = self.chooser.choose() if self.chooser is not None else self._fixed_path()
        if path == "cloud":
            result = self.predict_cloud(images, tasks, request_id)
        elif path == "device":
            result = self.predict_device(images, tasks, request_id)
        else:
            result = self.send(self.encoder.encode(images), tasks, request_id)
        if self.chooser is not None:
            self.chooser.record(path, result.encode_ms, result.roundtrip_ms, result.response.timing.total_ms,
                                result.payload_bytes, result.answer_bytes)
        return result

    def predict_texts(
        self, texts: Sequence[str], tasks: Sequence[str] | None = None, request_id: str | None = None
    ) -> Result:
        """Texts of a text bundle, one request each; the answers as one ``Result`` (bytes and
        times summed, predictions in the order of ``texts``)."""
        if isinstance(texts, str):
            raise ConfigError("pass a list of texts, not one string: predict(['a sentence'])")
        if not texts:
            raise ValueError("no texts to encode; pass at least one string")
        results = [self.send(self.encoder.encode_text(text), tasks, request_id) for text in texts]
        if len(results) == 1:
            return results[0]
        first = results[0].response
        predictions = {task: [p for r in results for p in r.response.predictions[task]] for task in first.predictions}
        timings = [r.response.timing for r in results]
        timing = Timing(**{field: sum(getattr(t, field) for t in timings) for field in Timing.model_fields})
        answered = {r.answered_by for r in results}
        response = first.model_copy(update={
            "predictions": predictions, "timing": timing,
            "answered_by": answered.pop() if len(answered) == 1 else "cloud",
        })
        return Result(response, sum(r.payload_bytes for r in results), sum(r.encode_ms for r in results),
                      sum(r.roundtrip_ms for r in results), "split", sum(r.answer_bytes for r in results))

    def _fixed_path(self) -> PathName:
        return "split" if self.mode == "auto" else self.mode

    def predict_cloud(
        self, images: Sequence[ImageLike], tasks: Sequence[str] | None = None, request_id: str | None = None
    ) -> Result:
        """Cloud-only: one image, resized to the encoder's input here, sent as PNG or JPEG."""
        if len(images) != 1:
            raise ValueError(f"cloud-only sends one image per request, got {len(images)}; send them one by one")
        started = time.perf_counter()
        _, height, width = self.encoder.manifest.input.shape
        body = encode_image(load_rgb(images[0], (height, width)), self.image_format, self.jpeg_quality)
        encode_ms = (time.perf_counter() - started) * 1000
        params = {"bundle": self.encoder.manifest.device_fingerprint[:16]}
        if tasks is not None:
            params["tasks"] = ",".join(tasks)
        if request_id is not None:
            params["id"] = request_id
        started = time.perf_counter()
        response, answer_bytes = self._post(
            body, "/v1/predict/image", {"Content-Type": _IMAGE_TYPES[self.image_format]}, params
        )
        return Result(response, len(body), encode_ms, (time.perf_counter() - started) * 1000, "cloud", answer_bytes)

    def predict_device(
        self, images: Sequence[ImageLike], tasks: Sequence[str] | None = None, request_id: str | None = None
    ) -> Result:
        """Device-only: the encoder and the bundle's cloud decoders, both here; no network."""
        if self.decoders is None:
            self.decoders = LocalDecoders(self.encoder.bundle_dir, self.encoder.manifest,  # says what is missing
                                          self.threads)
        started = time.perf_counter()
        symbols = self.encoder.symbols(images)
        predictions, _ = self.decoders.predict(symbols, tasks)
        elapsed = (time.perf_counter() - started) * 1000
        manifest = self.encoder.manifest
        response = PredictResponse(id=request_id, bundle=manifest.device_fingerprint, version=manifest.version,
                                   predictions=predictions, answered_by="device",
                                   timing=Timing(compute_ms=elapsed, total_ms=elapsed))
        return Result(response, 0, elapsed, 0.0, "device")

    def send(self, encoded: Encoded, tasks: Sequence[str] | None = None, request_id: str | None = None) -> Result:
        body = pack_request(self.encoder.request(encoded, tasks, request_id, protocol=self.protocol))
        started = time.perf_counter()
        answer_bytes = 0
        try:
            response, answer_bytes = self._post(body)
        except ServerUnreachable:
            if not self._can_fall_back(tasks):
                raise
            response = self._answer_on_device(encoded, tasks)
        return Result(response, len(body), encoded.encode_ms, (time.perf_counter() - started) * 1000,
                      "split", answer_bytes)

    def _post(
        self, body: bytes, url: str = "/v1/predict", headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[PredictResponse, int]:
        """The parsed answer and its body size, with retries on 502/503/504 and unreachable servers."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                answer = self.http.post(url, content=body, headers=headers, params=params)
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
                        return unpack_response(answer.content), len(answer.content)
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
        wanted = tasks if tasks is not None else self.encoder.manifest.default_tasks
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
