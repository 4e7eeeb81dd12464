"""Fuzzing the client protocol's codec (``paxctl/protocol/codec.py``), both directions.

The request, reply and push kinds and their fields are read from ``paxctl/protocol/messages.py``
(the ``Request`` and ``FromServer`` unions), so a kind or field added there is fuzzed at once.

* ``decode_request`` (what a node does with a client's frame) yields a typed request,
  ``NotARequest`` or ``BadRequest``, and nothing else, for valid requests, their encodings
  structurally mutated, and arbitrary bytes; a request it yields is canonical (encoding it again
  gives the same request), and a valid one survives the trip unchanged unless the decoder
  refuses one of its values with ``BadRequest``.
* ``decode_from_server`` (what a client does with a node's frame) yields a reply or a push, or
  ``ProtocolError``; every reply and push a node can encode comes back equal.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from fuzzing import (
    FROM_SERVER_KINDS,
    REQUEST_KINDS,
    client_derive,
    fuzz,
    msgpack_values,
    mutated,
    pack,
    unpack,
)
from hypothesis import given
from hypothesis import strategies as st

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
from paxctl.protocol.messages import (
    Failed,
    HelloResult,
    Ok,
    ReadKind,
    ReadRequest,
    SessionGranted,
)

derive = client_derive()
request_ids = [kind.__name__ for kind in REQUEST_KINDS]
from_server_ids = [kind.__name__ for kind in FROM_SERVER_KINDS]


def decode_request_cleanly(payload: Any) -> object:
    """The request ``payload`` holds, or the refusal; any other exception fails the test."""
    try:
        req = decode_request(payload)
    except (NotARequest, BadRequest) as refusal:
        return refusal
    assert type(req) in REQUEST_KINDS
    assert decode_request(encode_request(req)) == req  # canonical: nothing lost or invented
    return req


def encode_from_server(frame: Any) -> bytes:
    return encode_reply(frame) if isinstance(frame, Ok | Failed) else encode_push(frame)


def decode_from_server_cleanly(payload: Any) -> object:
    try:
        frame = decode_from_server(payload)
    except ProtocolError as refusal:
        return refusal
    assert type(frame) in FROM_SERVER_KINDS
    return frame


def normalized(req: Any) -> Any:
    """``req`` as the decoder reads it: a read of ephemerals or sessions names no path."""
    if isinstance(req, ReadRequest) and req.kind in (ReadKind.EPHEMERALS, ReadKind.SESSIONS):
        return dataclasses.replace(req, path="/")
    return req


@pytest.mark.parametrize("kind", REQUEST_KINDS, ids=request_ids)
@fuzz(25)
@given(data=st.data())
def test_valid_requests_survive_the_trip_or_are_refused_with_their_xid(kind, data):
    req = data.draw(derive.build(kind), label="request")
    out = decode_request_cleanly(encode_request(req))
    if isinstance(out, BadRequest):
        # A value the types allow but the protocol does not (a client id below the first,
        # seq 0, a watch on a read kind that sets none): answered, with the request's xid.
        assert out.xid == req.xid
    else:
        assert out == normalized(req)


@pytest.mark.parametrize("kind", REQUEST_KINDS, ids=request_ids)
@fuzz(40)
@given(data=st.data())
def test_mutated_requests_decode_or_are_refused(kind, data):
    req = data.draw(derive.build(kind), label="request")
    bad = data.draw(mutated(unpack(encode_request(req))), label="mutated")
    decode_request_cleanly(pack(bad))


@fuzz(300)
@given(st.binary(max_size=200) | msgpack_values.map(pack))
def test_arbitrary_bytes_decode_or_are_refused(payload):
    decode_request_cleanly(payload)


@pytest.mark.parametrize("kind", FROM_SERVER_KINDS, ids=from_server_ids)
@fuzz(25)
@given(data=st.data())
def test_replies_and_pushes_survive_the_trip(kind, data):
    frame = data.draw(derive.build(kind), label="frame")
    assert decode_from_server(encode_from_server(frame)) == frame


@pytest.mark.parametrize("kind", FROM_SERVER_KINDS, ids=from_server_ids)
@fuzz(30)
@given(data=st.data())
def test_mutated_server_frames_decode_or_raise_protocol_error(kind, data):
    frame = data.draw(derive.build(kind), label="frame")
    bad = data.draw(mutated(unpack(encode_from_server(frame))), label="mutated")
    decode_from_server_cleanly(pack(bad))


@fuzz(200)
@given(st.binary(max_size=200) | msgpack_values.map(pack))
def test_arbitrary_bytes_from_a_node_decode_or_raise_protocol_error(payload):
    decode_from_server_cleanly(payload)


@fuzz(200)
@given(msgpack_values | derive.build(HelloResult) | derive.build(SessionGranted))
def test_reply_values_are_read_or_refused(value):
    if isinstance(value, HelloResult):
        value = {"node": value.node}
    elif isinstance(value, SessionGranted):
        value = {"session": value.session, "timeout_ms": value.timeout_ms}
    for read in (hello_result, session_granted):
        with contextlib.suppress(ProtocolError):
            read(value)
