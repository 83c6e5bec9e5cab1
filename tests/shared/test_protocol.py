"""Wire protocol: round trips, and every malformed message rejected with a reason."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from shared.errors import PayloadTooLarge, ProtocolError, UnsupportedMediaType
from shared.protocol import (
    PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    RESPONSE_VERSION,
    Classification,
    Dense,
    Limits,
    PredictRequest,
    PredictResponse,
    Regression,
    Representation,
    bundle_id,
    check_content_type,
    fingerprint_matches,
    pack_request,
    pack_response,
    unpack_request,
    unpack_response,
)
from tests.shared.golden.make_golden import PROTOCOL_CASES, protocol_request

FINGERPRINT = "ab" * 32
GOLDEN = Path(__file__).parent / "golden"


def make_request(**changes: object) -> PredictRequest:
    """A v1 request, as every client before v2 sent."""
    fields: dict[str, object] = {
        "v": 1,
        "bundle": FINGERPRINT,
        "rep": Representation(codec="raw-uint8", shape=(2, 4, 3), bits=8, scale=1 / 255, zero_point=0,
                              data=bytes(range(24))),
        "tasks": ["shape", "size"],
        "id": "req-1",
    }
    fields.update(changes)
    return PredictRequest.model_validate(fields)


def make_v2(**changes: object) -> PredictRequest:
    fields: dict[str, object] = {
        "v": 2,
        "bundle": FINGERPRINT[:16],
        "rep": Representation(codec="rans-lanes", shape=(2, 4, 3), data=bytes(range(24))),
        "tasks": None,
        "id": None,
    }
    fields.update(changes)
    return PredictRequest.model_validate(fields)


def test_versions() -> None:
    assert PROTOCOL_VERSION == 2 and PROTOCOL_VERSIONS == {1, 2} and RESPONSE_VERSION == 1
    assert PredictResponse(bundle=FINGERPRINT, version=1, predictions={}).v == 1


def test_request_round_trip() -> None:
    request = make_request()
    assert unpack_request(pack_request(request)) == request


@pytest.mark.parametrize(
    "changes",
    [{}, {"tasks": ["shape"]}, {"id": "r"}, {"tasks": ["a", "b"], "id": "r"},
     {"rep": Representation(codec="rans", shape=(1, 4, 3), bits=4, scale=0.25, zero_point=1, data=b"x")}],
)
def test_v2_round_trip(changes: dict[str, object]) -> None:
    request = make_v2(**changes)
    assert unpack_request(pack_request(request)) == request


def test_v2_takes_the_bundle_id_from_a_full_fingerprint() -> None:
    packed = pack_request(make_v2(bundle=FINGERPRINT))
    assert unpack_request(packed).bundle == FINGERPRINT[:16]
    assert bundle_id(FINGERPRINT) == bytes.fromhex(FINGERPRINT[:16])
    with pytest.raises(ProtocolError, match="not a device fingerprint"):
        pack_request(make_v2(bundle="xyz"))


def test_v2_is_compact() -> None:
    data = bytes(180)
    one = make_v2(rep=Representation(codec="rans-lanes", shape=(1, 64, 8), data=data))
    assert len(pack_request(one)) <= len(data) + 20
    assert len(pack_request(one.model_copy(update={"tasks": ["shape", "size"], "id": "req-123"}))) <= len(data) + 40
    v1 = make_request(rep=Representation(codec="rans-lanes", shape=(1, 64, 8), bits=4, scale=1 / 15,
                                         zero_point=0, data=data))
    assert len(pack_request(v1)) > len(data) + 150


@pytest.mark.parametrize(("name", "v", "tasks", "request_id", "quant"), PROTOCOL_CASES,
                         ids=[case[0] for case in PROTOCOL_CASES])
def test_golden_requests_are_unchanged(
    name: str, v: int, tasks: list[str] | None, request_id: str | None, quant: bool
) -> None:
    request = protocol_request(v, tasks, request_id, quant)
    expected = (GOLDEN / f"{name}.bin").read_bytes()
    assert pack_request(request) == expected, (
        f"{name}.bin changed: devices in the field send exactly these bytes; if intended, add a "
        "protocol version and rerun make_golden"
    )
    assert unpack_request(expected) == request


def test_fingerprint_matches() -> None:
    assert fingerprint_matches(FINGERPRINT, FINGERPRINT)
    assert fingerprint_matches(FINGERPRINT[:16], FINGERPRINT)
    assert not fingerprint_matches(FINGERPRINT[:15], FINGERPRINT)
    assert not fingerprint_matches("cd" * 8, FINGERPRINT)


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
        (_raw("text"), "msgpack array .* or a map"),
        (_raw([1, 2, 3]), "protocol version 1 is not supported"),
        (_raw([]), "protocol version None"),
        (_raw({"v": 99}), "protocol version 99"),
        (_raw({"v": 2, "bundle": FINGERPRINT}), "a v2 request is a msgpack array"),
        (_raw({"v": 1, "bundle": FINGERPRINT}), "rep"),
        (_raw({**make_request().model_dump(), "rep": {**make_request().rep.model_dump(), "bits": None}}),
         "rep.bits: a v1 request must send it"),
        (_raw([2, bytes(8), 3, [1, 4, 3]]), "5 to 8 fields"),
        (_raw([2, bytes(8), 3, [1, 4, 3], b"", None, None, None, None]), "5 to 8 fields"),
        (_raw([2, "0123456789abcdef", 3, [1, 4, 3], b""]), "bundle: must be the 8-byte bundle id"),
        (_raw([2, bytes(7), 3, [1, 4, 3], b""]), "bundle: must be the 8-byte bundle id"),
        (_raw([2, bytes(8), 42, [1, 4, 3], b""]), "codec: 42 is not a codec number"),
        (_raw([2, bytes(8), True, [1, 4, 3], b""]), "codec: True"),
        (_raw([2, bytes(8), 3, 1, b""]), "rep.shape"),
        (_raw([2, bytes(8), 3, [1, 4, 3], 7]), "rep.data"),
        (_raw([2, bytes(8), 3, [1, 4, 3], b"", "shape"]), "tasks"),
        (_raw([2, bytes(8), 3, [1, 4, 3], b"", None, 5]), "id"),
        (_raw([2, bytes(8), 3, [1, 4, 3], b"", None, None, [4, 0.1]]), "quant: must be"),
        (_raw([2, bytes(8), 3, [1, 4, 3], b"", None, None, ["four", 0.1, 0]]), "rep.bits"),
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
    with pytest.raises(ProtocolError, match="batch of 0"):
        unpack_request(pack_request(make_v2(rep=Representation(codec="raw-uint8", shape=(0, 4, 3), data=b""))))
    many_tasks = make_request(tasks=[f"t{i}" for i in range(10)])
    with pytest.raises(ProtocolError, match="10 tasks"):
        unpack_request(pack_request(many_tasks), Limits(max_tasks=4))


def test_msgpack_lengths_are_bounded_while_unpacking() -> None:
    huge_array = _raw({"v": 1, "tasks": ["x"] * 100_000})
    with pytest.raises(ProtocolError):
        unpack_request(huge_array)
    with pytest.raises(ProtocolError):
        unpack_request(_raw([2, bytes(8), 3, [1, 4, 3], b"", ["x"] * 100_000]))


def test_packing_refuses_what_the_version_cannot_carry() -> None:
    with pytest.raises(ProtocolError, match="v1 request carries its quantization"):
        pack_request(make_request(rep=Representation(codec="raw-uint8", shape=(1, 4, 3), data=b"")))
    with pytest.raises(ProtocolError, match="all of bits, scale and zero_point, or none"):
        pack_request(make_v2(rep=Representation(codec="raw-uint8", shape=(1, 4, 3), bits=8, data=b"")))
    with pytest.raises(ProtocolError, match="no v2 number"):
        pack_request(make_v2(rep=Representation(codec="zstd", shape=(1, 4, 3), data=b"")))
    with pytest.raises(ProtocolError, match="cannot pack protocol version 3"):
        pack_request(make_v2(v=3))
