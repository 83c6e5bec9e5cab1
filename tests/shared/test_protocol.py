"""Wire protocol: round trips, and every malformed message rejected with a reason."""

from __future__ import annotations

import msgpack
import pytest

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType
from shared.protocol import (
    PROTOCOL_VERSION,
    Classification,
    Dense,
    Limits,
    PredictRequest,
    PredictResponse,
    Regression,
    Representation,
    check_content_type,
    pack_request,
    pack_response,
    unpack_request,
    unpack_response,
)

FINGERPRINT = "ab" * 32


def make_request(**changes: object) -> PredictRequest:
    fields: dict[str, object] = {
        "v": PROTOCOL_VERSION,
        "bundle": FINGERPRINT,
        "rep": Representation(codec="raw-uint8", shape=(2, 4, 3), bits=8, scale=1 / 255, zero_point=0,
                              data=bytes(range(24))),
        "tasks": ["shape", "size"],
        "id": "req-1",
    }
    fields.update(changes)
    return PredictRequest.model_validate(fields)


def test_request_round_trip() -> None:
    request = make_request()
    assert unpack_request(pack_request(request)) == request


def test_response_round_trip_keeps_prediction_kinds() -> None:
    response = PredictResponse(
        bundle=FINGERPRINT,
        version=3,
        predictions={
            "shape": [Classification(label="circle", index=0, score=0.9)],
            "size": [Regression(values=[11.5])],
            "mask": [Dense(shape=(2, 2), data=b"\x00\x01\x01\x00")],
        },
    )
    back = unpack_response(pack_response(response))
    assert back == response
    assert isinstance(back.predictions["mask"][0], Dense)


@pytest.mark.parametrize("content_type", ["application/vnd.msgpack", "application/x-msgpack",
                                          "application/msgpack; charset=binary"])
def test_msgpack_content_types_accepted(content_type: str) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_other_content_types_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType, match="application/vnd.msgpack"):
        check_content_type(content_type)


def _raw(fields: object) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1\x00garbage", "not valid msgpack"),
        (pack_request(make_request())[:-5], "not valid msgpack"),
        (_raw([1, 2, 3]), "must be a msgpack map"),
        (_raw({"v": 99}), "protocol version 99"),
        (_raw({"v": PROTOCOL_VERSION, "bundle": FINGERPRINT}), "rep"),
        (_raw({**make_request().model_dump(), "rep": {"codec": "raw-uint8", "shape": "big"}}), "rep.shape"),
        (_raw({**make_request().model_dump(), "surprise": 1}), "surprise"),
    ],
)
def test_malformed_requests_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        unpack_request(body)


def test_body_over_limit_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        unpack_request(b"\x00" * 101, Limits(max_body_bytes=100))


def test_batch_and_task_counts_are_bounded() -> None:
    big_batch = make_request(rep=Representation(codec="raw-uint8", shape=(300, 4, 3), bits=8, scale=1.0,
                                                zero_point=0, data=b""))
    with pytest.raises(ProtocolError, match="batch of 300"):
        unpack_request(pack_request(big_batch))
    many_tasks = make_request(tasks=[f"t{i}" for i in range(10)])
    with pytest.raises(ProtocolError, match="10 tasks"):
        unpack_request(pack_request(many_tasks), Limits(max_tasks=4))


def test_msgpack_lengths_are_bounded_while_unpacking() -> None:
    huge_array = _raw({"v": PROTOCOL_VERSION, "tasks": ["x"] * 100_000})
    with pytest.raises(ProtocolError):
        unpack_request(huge_array)
