"""The codec: everything round-trips, and nothing but CodecError comes out of bad bytes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxctl.core import messages as messages_module
from paxctl.core.codec import CODEC_VERSION, CodecError, decode, decode_value, encode, encode_value
from paxctl.core.membership import founding
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    Handover,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndex,
    ReadIndexReply,
    Relay,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command

MAX = 2**63 - 1

# ------------------------------------------------------------------ strategies

ints = st.integers(min_value=0, max_value=MAX)
small = st.integers(min_value=0, max_value=1000)
ballots = st.builds(Ballot, ints, ints)
commands = st.builds(Command, ints, ints, st.binary(max_size=16))
values = st.lists(commands, max_size=4).map(tuple)
chosen = st.lists(st.builds(ChosenEntry, ints, values), max_size=4).map(tuple)
votes = st.lists(st.builds(AcceptedEntry, ints, ballots, values), max_size=4).map(tuple)

messages = st.one_of(
    st.builds(Prepare, ints, ints, ballots, ints),
    st.builds(Promise, ints, ints, ballots, ints, votes, ints, ints),
    st.builds(Nack, ints, ints, ballots, ballots),
    st.builds(Accept, ints, ints, ballots, chosen, ints, ints),
    st.builds(
        Accepted, ints, ints, ballots, st.lists(ints, max_size=6).map(tuple), ints, ints, ints
    ),
    st.builds(ReadIndex, ints, ints, ints),
    st.builds(PreVote, ints, ints, ints),
    st.builds(PreVoteReply, ints, ints, ints, ints),
    st.builds(ReadIndexReply, ints, ints, ints, ints, ints),
    st.builds(Forward, ints, ints, values),
    st.builds(CatchupRequest, ints, ints, ints),
    st.builds(CatchupReply, ints, ints, chosen, ints),
    st.builds(
        SnapshotOffer,
        ints,
        ints,
        ints,
        st.sampled_from([1, 3, 5]).map(
            lambda n: (founding({i: f"h:{i}" for i in range(1, n + 1)}),)
        ),
        ints,
        st.binary(max_size=32),
    ),
    st.builds(Handover, ints, ints, ints),
    st.builds(SnapshotRequest, ints, ints, ints, ints, ints),
    st.builds(SnapshotChunk, ints, ints, ints, ints, st.binary(max_size=64)),
)

B = Ballot(3, 2)
V = (Command(7, 1, b"x"), Command(8, 0, b""))
EXAMPLES: list[Message] = [
    Prepare(1, 2, B, 5),
    Promise(2, 1, B, 5, (AcceptedEntry(5, Ballot(1, 3), V), AcceptedEntry(7, B, ())), 4),
    Promise(2, 1, B, 1, (), 0),
    Promise(2, 1, B, 1, (), 40, 40),  # an acceptor that compacted through slot 40
    Nack(3, 1, Ballot(1, 1), B),
    Accept(1, 3, B, (ChosenEntry(4, V), ChosenEntry(5, ())), 3),
    Accept(1, 3, B, (), 3),  # heartbeat
    Accepted(3, 1, B, (4, 5), 3),
    Accepted(3, 1, B, (), 0),
    Forward(2, 1, V),
    CatchupRequest(2, 1, 9),
    CatchupReply(1, 2, (ChosenEntry(9, V),), 9),
    CatchupReply(1, 2, (), 0),
    SnapshotOffer(1, 2, 40, (founding({1: "h:1", 2: "h:2", 3: "h:3"}),), 5, b"\x01" * 32),
    Handover(1, 2, 3),
    Accepted(3, 1, B, (4,), 3, 7, 12345),
    SnapshotRequest(2, 1, 40, 0, 1024),
    SnapshotChunk(1, 2, 40, 0, b"state"),
    SnapshotChunk(1, 2, 40, 5, b""),
    Accept(1, 2, B, (), 3, 17),  # a heartbeat of round 17
    ReadIndex(2, 1, 99),
    ReadIndexReply(1, 2, 99, 12, 1),
    PreVote(3, 1, 8),
    PreVoteReply(1, 3, 8, 1),
    Relay(2, 1, 1, b"\x93\x01\x02\x03"),
    Relay(1, 3, 2, b""),
]


def test_examples_cover_every_message_type():
    kinds = {
        obj
        for obj in vars(messages_module).values()
        if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
    }
    assert len(kinds) == 17
    assert {type(m) for m in EXAMPLES} == kinds


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(msg):
    data = encode(msg)
    assert isinstance(data, bytes)
    out = decode(data)
    assert type(out) is type(msg)
    assert out == msg


def test_decoded_collections_are_tuples_and_ballots_are_ballots():
    out = decode(encode(EXAMPLES[1]))
    assert isinstance(out, Promise)
    assert isinstance(out.ballot, Ballot)
    assert isinstance(out.accepted, tuple)
    assert isinstance(out.accepted[0].value, tuple)
    assert isinstance(out.accepted[0].ballot, Ballot)
    acc = decode(encode(EXAMPLES[7]))
    assert isinstance(acc, Accepted)
    assert isinstance(acc.slots, tuple)


@given(messages)
def test_generated_messages_round_trip(msg):
    assert decode(encode(msg)) == msg


# ------------------------------------------------------------------ malformed input


def expect_codec_error(data: Any) -> None:
    try:
        decode(data)
    except CodecError:
        return
    except Exception as exc:  # pragma: no cover - this is the failure being tested for
        raise AssertionError(f"{type(exc).__name__} escaped decode: {exc}") from exc
    raise AssertionError(f"decode accepted malformed input {data!r}")


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def raw(msg: Message) -> list[Any]:
    return msgpack.unpackb(encode(msg), raw=False, use_list=True)


@given(st.binary(max_size=64))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_raise_codec_error_or_decode_cleanly(data):
    try:
        msg = decode(data)
    except CodecError:
        return
    # Random bytes can be a valid message by chance; then it must be a real, re-encodable one.
    assert isinstance(msg, Message)
    assert decode(encode(msg)) == msg


msgpack_objects = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=3), kids, max_size=3)
    ),
    max_leaves=12,
)


@given(st.integers(min_value=0, max_value=10), st.lists(msgpack_objects, max_size=5))
def test_random_structures_with_valid_header_raise_codec_error_or_decode(tag, body):
    try:
        msg = decode(pack([CODEC_VERSION, tag, 1, 2, *body]))
    except CodecError:
        return
    assert isinstance(msg, Message)
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_truncation_raises_codec_error(msg):
    data = encode(msg)
    for cut in range(len(data)):
        expect_codec_error(data[:cut])


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_trailing_garbage_raises_codec_error(msg):
    expect_codec_error(encode(msg) + b"\x00")


@pytest.mark.parametrize(
    "version", [0, CODEC_VERSION - 1, CODEC_VERSION + 1, 255, -1, "1", b"\x01", None, [1]]
)
def test_wrong_version_raises_codec_error(version):
    expect_codec_error(pack([version, 1, 1, 2, [1, 1], 1]))


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_of_wrong_type_raises_codec_error(version):
    # 1.0 and True compare equal to 1 but are not the integer 1; the codec checks every other
    # field's type exactly (see the tag), so the version must be checked the same way.
    expect_codec_error(pack([version, 1, 1, 2, [1, 1], 1]))


@pytest.mark.parametrize("tag", [0, 9, 255, -1, True, 1.0, "1", None, [1]])
def test_unknown_tag_raises_codec_error(tag):
    expect_codec_error(pack([CODEC_VERSION, tag, 1, 2, [1, 1], 1]))


@pytest.mark.parametrize(
    "obj", [None, 1, "x", b"x", {"a": 1}, [], [1], [1, 1], [1, 1, 1], 1.5, True]
)
def test_non_message_top_level_raises_codec_error(obj):
    expect_codec_error(pack(obj))


def test_non_bytes_input_raises_codec_error():
    expect_codec_error("not bytes")
    expect_codec_error(None)


def paths(obj: Any, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Every position inside a decoded message, with the object found there."""
    yield prefix, obj
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from paths(x, (*prefix, i))


def replaced(obj: list[Any], path: tuple[int, ...], new: Any) -> list[Any]:
    out = copy.deepcopy(obj)
    target = out
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = new
    return out


WRONG_FOR_INT = [None, True, False, 1.0, "1", b"1", [1], {"1": 1}]
WRONG_FOR_LIST = [None, 1, "x", b"x", {"a": 1}, 1.5, True]
WRONG_FOR_BYTES = [None, 1, "x", [1], True]


def mutations(msg: Message) -> Iterator[tuple[str, list[Any]]]:
    """Every field (except the version, tested on its own) replaced by values of wrong types."""
    r = raw(msg)
    for path, obj in paths(r):
        if path in ((), (0,)):
            continue
        if type(obj) is int:
            wrong = [*WRONG_FOR_INT, -1, -(2**63), 2**63, 2**64 - 1]
        elif type(obj) is list:
            wrong = WRONG_FOR_LIST
        elif type(obj) is bytes:
            wrong = WRONG_FOR_BYTES
        elif type(obj) is bool:  # a member's flags (configurations)
            wrong = [1, "yes", b"", None, []]
        elif type(obj) is str:  # a member's addresses
            wrong = [1, b"h:1", None, [], "x" * 300]
        else:  # pragma: no cover
            raise AssertionError(f"unexpected {obj!r}")
        for w in wrong:
            yield f"{path}={w!r}", replaced(r, path, w)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_fields_of_wrong_type_or_negative_raise_codec_error(msg):
    count = 0
    for what, bad in mutations(msg):
        try:
            decode(pack(bad))
        except CodecError:
            count += 1
            continue
        except Exception as exc:
            raise AssertionError(f"{what}: {type(exc).__name__} escaped: {exc}") from exc
        raise AssertionError(f"{what}: decoded {bad!r}")
    assert count > 0


FIELD_KINDS: dict[type[Message], tuple[str, ...]] = {
    Prepare: ("ballot", "int"),
    Promise: ("ballot", "int", "votes", "int", "int"),
    Nack: ("ballot", "ballot"),
    Accept: ("ballot", "chosen", "int", "int"),
    Accepted: ("ballot", "slots", "int", "int", "int"),
    Forward: ("value",),
    CatchupRequest: ("int",),
    CatchupReply: ("chosen", "int"),
    SnapshotOffer: ("int", "configs", "int", "bytes"),
    SnapshotRequest: ("int", "int", "int"),
    SnapshotChunk: ("int", "int", "bytes"),
    ReadIndex: ("int",),
    ReadIndexReply: ("int", "int", "int"),
    PreVote: ("int",),
    PreVoteReply: ("int", "int"),
    Relay: ("int", "bytes"),
    Handover: ("int",),
}


def record_paths(msg: Message) -> Iterator[tuple[int, ...]]:
    """Paths of every fixed-arity list: the message, ballots, commands, entries and votes."""
    r = raw(msg)
    yield ()
    for i, kind in enumerate(FIELD_KINDS[type(msg)]):
        p = (4 + i,)
        field = r[4 + i]
        if kind == "ballot":
            yield p
        elif kind == "value":
            yield from ((*p, j) for j in range(len(field)))
        elif kind == "chosen":
            for j, (_, value) in enumerate(field):
                yield (*p, j)
                yield from ((*p, j, 1, k) for k in range(len(value)))
        elif kind == "configs":
            for j, (_, _, members, _) in enumerate(field):
                yield (*p, j)
                yield from ((*p, j, 2, k) for k in range(len(members)))
        elif kind == "votes":
            for j, (_, _, value) in enumerate(field):
                yield (*p, j)
                yield (*p, j, 1)
                yield from ((*p, j, 2, k) for k in range(len(value)))


def length_mutations(msg: Message) -> Iterator[tuple[str, list[Any]]]:
    """Every fixed-arity list one element shorter and one longer."""
    r = raw(msg)
    for path in record_paths(msg):
        obj = r
        for i in path:
            obj = obj[i]
        shorter, longer = obj[:-1], [*obj, 0]
        if not path:
            yield "message shorter", shorter
            yield "message longer", longer
        else:
            yield f"{path} shorter", replaced(r, path, shorter)
            yield f"{path} longer", replaced(r, path, longer)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_wrong_lengths_raise_codec_error(msg):
    seen = 0
    for what, bad in length_mutations(msg):
        seen += 1
        try:
            decode(pack(bad))
        except CodecError:
            continue
        except Exception as exc:
            raise AssertionError(f"{what}: {type(exc).__name__} escaped: {exc}") from exc
        raise AssertionError(f"{what}: decoded {bad!r}")
    assert seen >= 2  # at least the message itself, shorter and longer


@pytest.mark.parametrize(
    "bad",
    [
        [CODEC_VERSION, 1, 1, 2, [1, 1, 1], 1],  # ballot of three
        [CODEC_VERSION, 1, 1, 2, [1], 1],  # ballot of one
        [CODEC_VERSION, 1, 1, 2, [1, 1]],  # Prepare missing from_slot
        [CODEC_VERSION, 1, 1, 2, [1, 1], 1, 1],  # Prepare with an extra field
        [CODEC_VERSION, 6, 1, 2, [[1, 1]]],  # command of two
        [CODEC_VERSION, 6, 1, 2, [[1, 1, b"x", 1]]],  # command of four
        [CODEC_VERSION, 4, 1, 2, [1, 1], [[1]], 0],  # chosen entry of one
        [CODEC_VERSION, 4, 1, 2, [1, 1], [[1, [], 1]], 0],  # chosen entry of three
        [CODEC_VERSION, 2, 1, 2, [1, 1], 1, [[1, [1, 1]]], 0],  # vote of two
        [CODEC_VERSION, 2, 1, 2, [1, 1], 1, [[1, [1, 1], [], 0]], 0],  # vote of four
        [CODEC_VERSION, 1, 1],  # too short to have a header
        [CODEC_VERSION, 1, 1, -2, [1, 1], 1],  # negative receiver
        [CODEC_VERSION, 1, -1, 2, [1, 1], 1],  # negative sender
        [CODEC_VERSION, 5, 1, 2, [1, 1], [1, -5], 0],  # negative slot in Accepted
        [CODEC_VERSION, 6, 1, 2, [[-1, 1, b"x"]]],  # negative client
        [CODEC_VERSION, 6, 1, 2, [[1, 1, "x"]]],  # data as str, not bytes
        [CODEC_VERSION, 3, 1, 2, [1, 1], [1, 2**64 - 1]],  # out of range
    ],
)
def test_hand_written_malformed_messages_raise_codec_error(bad):
    expect_codec_error(pack(bad))


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


def test_decoded_commands_of_one_client_share_its_id_object() -> None:
    """A log holds thousands of commands of a few clients until the next snapshot (issue 16,
    memory): their ids are one int object each, and the values decode unchanged."""
    client = 1 << 40
    wire = msgpack.unpackb(
        msgpack.packb(encode_value((Command(client, 1000, b"a"), Command(client, 1001, b"b")))),
        raw=False,
    )
    first, second = decode_value(wire)
    again = decode_value(wire)[0]
    assert (first.client, first.seq, second.seq) == (client, 1000, 1001)
    assert first.client is second.client is again.client
