"""The typed client protocol: every message survives its codec, and bad bytes get clear errors."""

from __future__ import annotations

import msgpack
import pytest

from paxctl.protocol.codec import (
    BadRequest,
    NotARequest,
    ProtocolError,
    decode_from_server,
    decode_request,
    encode_push,
    encode_reply,
    encode_request,
    hello_result,
    session_granted,
)
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    Ping,
    ReadKind,
    ReadRequest,
    SessionEnded,
    StatusRequest,
    SyncRequest,
    UnwatchRequest,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.secrets import MAX_SECRET_BYTES, MIN_SECRET_BYTES
from paxctl.statemachine.errors import ERRORS
from paxctl.statemachine.ops import FIRST_CLIENT_ID, Create, SetData

REQUESTS = [
    Hello(1, FIRST_CLIENT_ID, secret=b"s" * MIN_SECRET_BYTES),
    Hello(2, 2**62 + 5, True, 99, (WatchSpec(3, "/a", WatchMode.RECURSIVE),), b"s" * 64),
    OpenSessionRequest(3, 1, 5000),
    CloseSessionRequest(4, 7),
    Ping(5),
    StatusRequest(6),
    WriteRequest(7, 2, Create("/x", b"data")),
    WriteRequest(8, 3, SetData("/x", b"", 4)),
    ReadRequest(9, ReadKind.GET, "/x", watch=4),
    ReadRequest(10, ReadKind.CHILDREN, "/", stats=True, local=True, min_zxid=77),
    ReadRequest(11, ReadKind.EPHEMERALS, "/", session=FIRST_CLIENT_ID),
    WatchRequest(12, 1, "/x", WatchMode.DATA, None),
    WatchRequest(13, 2, "/y", WatchMode.PERSISTENT, 12345),
    UnwatchRequest(14, 2),
    SyncRequest(15),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_survives_its_codec(req):
    assert decode_request(encode_request(req)) == req


@pytest.mark.parametrize(
    "msg",
    [
        Ok(1, 5, None),
        Ok(2, 6, {"data": b"x", "stat": {"version": 1}}),
        Failed(3, 7, ErrorCode.NO_NODE, "no node /x"),
        Failed(4, 8, ErrorCode.BAD_VERSION, "bad version", index=2),
    ],
)
def test_every_reply_survives_its_codec(msg):
    assert decode_from_server(encode_reply(msg)) == msg


def test_pushes_survive_their_codec():
    events = WatchEvents(9, (WatchEvent(1, "created", "/a", 9), WatchEvent(2, "deleted", "/b", 9)))
    assert decode_from_server(encode_push(events)) == events
    assert decode_from_server(encode_push(SessionEnded(10, FIRST_CLIENT_ID))) == SessionEnded(
        10, FIRST_CLIENT_ID
    )


def test_an_oversized_reply_becomes_data_too_large():
    wire = encode_reply(Ok(1, 2, b"x" * 1000), limit=100)
    reply = decode_from_server(wire)
    assert isinstance(reply, Failed) and reply.code is ErrorCode.DATA_TOO_LARGE
    assert reply.xid == 1 and "exceeds the 100-byte limit" in reply.message


def _req(**doc):
    return msgpack.packb(doc, use_bin_type=True)


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", msgpack.packb([1, 2]), _req(op="ping"), _req(xid="1", op="ping"), _req(xid=1, op=3)],
)
def test_bytes_that_are_no_request_say_so(payload):
    with pytest.raises(NotARequest):
        decode_request(payload)


@pytest.mark.parametrize(
    ("doc", "code", "words"),
    [
        ({"op": "launch"}, "BadArguments", "unknown operation 'launch'"),
        ({"op": "hello"}, "BadArguments", "missing field 'client'"),
        ({"op": "hello", "client": 5}, "BadArguments", "client must be an integer"),
        ({"op": "hello", "client": FIRST_CLIENT_ID, "session": 1}, "BadArguments", "session"),
        ({"op": "hello", "client": FIRST_CLIENT_ID}, "BadArguments", "missing field 'secret'"),
        (
            {"op": "hello", "client": FIRST_CLIENT_ID, "secret": b"s" * (MIN_SECRET_BYTES - 1)},
            "BadArguments",
            "secret must be 16 to 64 bytes",
        ),
        (
            {"op": "hello", "client": FIRST_CLIENT_ID, "secret": b"s" * (MAX_SECRET_BYTES + 1)},
            "BadArguments",
            "secret must be",
        ),
        (
            {"op": "hello", "client": FIRST_CLIENT_ID, "secret": "s" * MIN_SECRET_BYTES},
            "BadArguments",
            "secret must be",
        ),
        (
            {"op": "hello", "client": FIRST_CLIENT_ID, "watches": [[1, "/a"]]},
            "BadArguments",
            "[wid",
        ),
        ({"op": "write", "seq": 1, "data": "text"}, "BadArguments", "encoded operation"),
        ({"op": "write", "seq": 0, "data": b"\x90"}, "BadArguments", "seq"),
        ({"op": "read", "kind": "steal", "path": "/"}, "BadArguments", "kind must be one of"),
        ({"op": "read", "kind": "get", "path": "x"}, "BadArguments", "path"),
        ({"op": "read", "kind": "stat", "path": "/", "watch": 1}, "BadArguments", "cannot set"),
        ({"op": "watch", "wid": -1, "path": "/", "mode": "data"}, "BadArguments", "wid"),
        ({"op": "watch", "wid": 1, "path": "/", "mode": "loud"}, "BadArguments", "mode"),
        ({"op": "open_session", "seq": 1, "timeout_ms": 2**63}, "BadArguments", "timeout_ms"),
    ],
)
def test_a_bad_field_is_answered_with_its_code_and_name(doc, code, words):
    with pytest.raises(BadRequest) as info:
        decode_request(_req(xid=42, **doc))
    assert info.value.xid == 42
    assert info.value.error.code == code
    assert words in str(info.value)


def test_too_much_data_in_a_write_keeps_its_own_code():
    data = msgpack.packb([0, "/x", b"x" * (1024 * 1024 + 1), False, False], use_bin_type=True)
    with pytest.raises(BadRequest) as info:
        decode_request(_req(xid=1, op="write", seq=1, data=data))
    assert info.value.error.code in ("DataTooLarge", "BadArguments")


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        {"xid": 1},
        {"xid": "1", "zxid": 1, "ok": None},
        {"xid": 1, "zxid": 1, "err": 5},
        {"xid": 1, "zxid": 1, "err": "NoNode", "index": -1},
        {"events": [[1, "created", "/a"]], "zxid": 1},
        {"zxid": 1},
    ],
)
def test_frames_a_node_would_never_send_are_protocol_errors(doc):
    with pytest.raises(ProtocolError):
        decode_from_server(msgpack.packb(doc, use_bin_type=True))


def test_an_unknown_code_from_a_newer_node_is_kept_as_text():
    reply = decode_from_server(msgpack.packb({"xid": 1, "zxid": 0, "err": "Quota", "msg": "m"}))
    assert reply == Failed(1, 0, "Quota", "m")


def test_result_shapes_are_checked():
    assert hello_result({"node": 2}).node == 2
    assert session_granted({"session": 70000, "timeout_ms": 4000}).timeout_ms == 4000
    for bad in (None, {"node": "2"}, [2]):
        with pytest.raises(ProtocolError):
            hello_result(bad)
    with pytest.raises(ProtocolError):
        session_granted({"session": 70000})


def test_every_znode_error_has_a_protocol_code():
    assert set(ERRORS) <= {c.value for c in ErrorCode}
