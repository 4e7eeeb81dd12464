"""Reading and changing the configuration over the client protocol (issue 15): the requests
survive their codec, every bad field is refused by name, and the proof binds every field."""

from __future__ import annotations

import msgpack
import pytest

from paxctl.protocol.admin_proof import PROOF_SIZE, proof_matches, reconfig_proof
from paxctl.protocol.codec import (
    BadRequest,
    ProtocolError,
    decode_from_server,
    decode_request,
    encode_reply,
    encode_request,
    members_dict,
    members_reply,
    members_reply_doc,
)
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    MemberInfo,
    MembersReply,
    MembersRequest,
    Ok,
    ReconfigRequest,
)
from paxctl.statemachine.errors import AuthFailed, ReconfigRefused, error_from_code

SECRET = bytes(range(32))
PROOF = b"p" * PROOF_SIZE


@pytest.mark.parametrize(
    "req",
    [
        MembersRequest(1),
        ReconfigRequest(2, "add", 4, "127.0.0.1:7004", "127.0.0.1:8004", proof=PROOF),
        ReconfigRequest(3, "add", 5, "h:1", "h:2", learner=True, base=17, proof=PROOF),
        ReconfigRequest(4, "replace", 6, "h:1", "h:2", replaces=2, proof=PROOF),
        ReconfigRequest(5, "remove", 3, base=0, proof=PROOF),
    ],
    ids=lambda r: f"{type(r).__name__}-{getattr(r, 'kind', '')}",
)
def test_configuration_requests_survive_their_codec(req):
    assert decode_request(encode_request(req)) == req


def _reconfig(**fields):
    doc = {"xid": 7, "op": "reconfig", "kind": "add", "node": 4, "peer": "h:1", "client": "h:2"}
    doc["proof"] = PROOF
    doc.update(fields)
    return msgpack.packb({k: v for k, v in doc.items() if v is not None}, use_bin_type=True)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "grow"}, "kind must be one of add, remove, replace"),
        ({"kind": None}, "missing field 'kind'"),
        ({"node": 0}, "node must be an integer in [1, 2**63)"),
        ({"node": 2**63}, "node must be an integer"),
        ({"node": "4"}, "node must be an integer"),
        ({"peer": "h" * 256}, "peer must be a HOST:PORT string of at most 255 bytes"),
        ({"client": 5}, "client must be a HOST:PORT string"),
        ({"peer": ""}, "a node to add needs its peer and client addresses"),
        ({"learner": 1}, "learner must be true or false"),
        ({"base": -2}, "base must be -1"),
        ({"base": 2**63}, "base must be -1"),
        ({"base": 1.5}, "base must be -1"),
        ({"proof": None}, "missing field 'proof'"),
        ({"proof": b"x" * 31}, "proof must be 32 bytes"),
        ({"proof": "p" * 32}, "proof must be 32 bytes"),
        ({"kind": "replace"}, "replace names the voter it replaces"),
        ({"replaces": 2}, "only replace names a voter to replace"),
        ({"kind": "replace", "replaces": 4}, "a node cannot replace itself"),
        ({"kind": "remove"}, "remove takes only the node's id"),
    ],
)
def test_a_bad_change_is_refused_by_field_and_keeps_its_xid(fields, words):
    with pytest.raises(BadRequest) as caught:
        decode_request(_reconfig(**fields))
    assert caught.value.xid == 7 and caught.value.error.code == "BadArguments"
    assert words in caught.value.error.message


def test_the_proof_binds_every_field_and_the_secret():
    base = {"peer": "h:1", "client": "h:2", "learner": False, "replaces": 0, "base": -1}
    proof = reconfig_proof(SECRET, "add", 4, **base)
    assert len(proof) == PROOF_SIZE
    assert proof_matches(SECRET, proof, "add", 4, "h:1", "h:2", False, 0, -1)
    changed = [
        ("replace", 4, "h:1", "h:2", False, 0, -1),
        ("add", 5, "h:1", "h:2", False, 0, -1),
        ("add", 4, "h:9", "h:2", False, 0, -1),
        ("add", 4, "h:1", "h:9", False, 0, -1),
        ("add", 4, "h:1", "h:2", True, 0, -1),
        ("add", 4, "h:1", "h:2", False, 3, -1),
        ("add", 4, "h:1", "h:2", False, 0, 0),
    ]
    for fields in changed:
        assert not proof_matches(SECRET, proof, *fields), fields
    other = bytes(32)
    assert not proof_matches(other, proof, "add", 4, "h:1", "h:2", False, 0, -1)
    assert not proof_matches(b"", proof, "add", 4, "h:1", "h:2", False, 0, -1)
    assert not proof_matches(SECRET, proof[:-1], "add", 4, "h:1", "h:2", False, 0, -1)


REPLY = MembersReply(
    0,
    0,
    epoch=40,
    active=56,
    commit=50,
    leader=2,
    next_id=5,
    in_flight=True,
    members=(
        MemberInfo(1, True, "a:1", "a:2"),
        MemberInfo(2, True, "b:1", "b:2"),
        MemberInfo(4, False, "d:1", "d:2", promote=True, replaces=1),
    ),
)


def test_a_members_reply_survives_the_wire_and_reads_as_plain_values():
    wire = decode_from_server(encode_reply(Ok(9, 77, members_reply_doc(REPLY))))
    assert isinstance(wire, Ok)
    assert members_reply(0, 0, wire.value) == REPLY
    doc = members_dict(REPLY)
    assert doc["epoch"] == 40 and doc["in_flight"] is True and doc["leader"] == 2
    assert doc["members"][2] == {
        "id": 4,
        "voter": False,
        "peer": "d:1",
        "client": "d:2",
        "promote": True,
        "replaces": 1,
    }


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {**members_reply_doc(REPLY), "epoch": -1},
        {**members_reply_doc(REPLY), "in_flight": 1},
        {**members_reply_doc(REPLY), "members": {}},
        {**members_reply_doc(REPLY), "members": [[1, True, "a", "b", False]]},
        {**members_reply_doc(REPLY), "members": [[1, 1, "a", "b", False, 0]]},
        {**members_reply_doc(REPLY), "members": [[1, True, 5, "b", False, 0]]},
    ],
)
def test_a_members_reply_a_node_would_never_send_is_a_protocol_error(value):
    with pytest.raises(ProtocolError):
        members_reply(0, 0, value)


def test_refusals_have_their_own_codes_and_exceptions():
    assert isinstance(error_from_code(ErrorCode.AUTH_FAILED, "no"), AuthFailed)
    refused = error_from_code(ErrorCode.RECONFIG_REFUSED, "a change is in flight")
    assert isinstance(refused, ReconfigRefused) and refused.message == "a change is in flight"
