"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.cloud_server.schemathesis_hooks): send the msgpack
bodies the schema describes as msgpack, as DeviceClient does."""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis

from shared.protocol import MSGPACK_CONTENT_TYPES

_INT_RANGE = (-(2**63), 2**64 - 1)


def _packable(value: Any) -> Any:
    """``value`` with integers msgpack cannot hold (negative tests make them) sent as their digits."""
    if isinstance(value, dict):
        return {_packable(k): _packable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_packable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return str(value)
    return value


@schemathesis.serializer(*sorted(MSGPACK_CONTENT_TYPES))
def to_msgpack(ctx: Any, value: Any) -> bytes:
    packed: bytes = msgpack.packb(_packable(value), use_bin_type=True)
    return packed
