"""One error tree for device and cloud.

    DeviceTuningError
    ├── ConfigError              an option, setting or combination of them that cannot work
    ├── DataError                a data folder that does not follow the user-data format
    ├── BundleError              a bundle on disk is missing, malformed or tampered with
    │   └── IntegrityError       a file's sha256 is not the one the manifest records
    ├── ProtocolError            a request or response that breaks the wire contract
    │   ├── UnsupportedMediaType the body is not msgpack
    │   ├── PayloadTooLarge      the body is over the configured limit
    │   └── CodecError           representation bytes that do not decode
    ├── FingerprintMismatch      the payload was made by another device half
    ├── UnknownTask              a task the bundle does not serve
    ├── Overloaded               the server refused work it could not take now
    └── RemoteError              the device got an error answer or no answer at all
        └── ServerUnreachable    no connection, or the request timed out

Only ``cloud_server`` maps these to HTTP status codes; the ``devtune`` command line maps
them to one-line messages and exit codes. Every message says what was wrong and what to
do about it. ``ConfigError``, ``DataError`` and ``ProtocolError`` are also ``ValueError``s,
so callers that caught ``ValueError`` before the tree existed keep working.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "CodecError",
    "ConfigError",
    "DataError",
    "DeviceTuningError",
    "FingerprintMismatch",
    "IntegrityError",
    "Overloaded",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteError",
    "ServerUnreachable",
    "UnknownTask",
    "UnsupportedMediaType",
]


class DeviceTuningError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(DeviceTuningError, ValueError):
    """An option, setting or combination of them that cannot work (unknown split, data set or task)."""


class DataError(DeviceTuningError, ValueError):
    """A user data folder that does not follow the documented format; names the file and line."""


class BundleError(DeviceTuningError):
    """A bundle directory cannot be used as it is."""


class IntegrityError(BundleError):
    """A bundle file does not match the sha256 in its manifest."""


class ProtocolError(DeviceTuningError, ValueError):
    """A message breaks the wire contract (shape, size, type, version)."""


class UnsupportedMediaType(ProtocolError):
    """The body was sent with a content type other than msgpack."""


class PayloadTooLarge(ProtocolError):
    """The body is larger than the server accepts."""


class CodecError(ProtocolError):
    """Representation bytes that the bundle's codec cannot decode or encode."""


class FingerprintMismatch(DeviceTuningError):
    """The payload was produced by a device half other than the served bundle's."""

    def __init__(self, message: str, expected: str, got: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class UnknownTask(DeviceTuningError, LookupError):
    """A requested task is not served by the bundle."""

    def __init__(self, message: str, known: list[str]) -> None:
        super().__init__(message)
        self.known = known


class Overloaded(DeviceTuningError):
    """The server is at capacity; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteError(DeviceTuningError):
    """The cloud answered with an error, or could not be asked."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class ServerUnreachable(RemoteError):
    """No connection could be made, or no answer came in time."""
