"""Operations: checked when built, and an encoding that refuses anything it did not produce."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from znode_helpers import all_ops as ops

from paxctl.statemachine import (
    FIRST_CLIENT_ID,
    MAX_DATA,
    MAX_REAP_PATHS,
    BadArguments,
    Check,
    CloseSession,
    Create,
    DataTooLarge,
    Delete,
    Multi,
    OpenSession,
    Reap,
    SetData,
    decode_command,
    decode_op,
    encode_command,
    encode_op,
)
from paxctl.statemachine.ops import COMMAND_FORMAT, MAX_MULTI_OPS, MAX_REQUEST_BYTES


def pack(x) -> bytes:
    return msgpack.packb(x, use_bin_type=True)


# ---------------------------------------------------------------------- construction checks


@pytest.mark.parametrize(
    "build",
    [
        lambda: Create("a"),
        lambda: Create("/a/"),
        lambda: Create("/a", "text"),  # data must be bytes
        lambda: Create("/a", bytearray(b"x")),
        lambda: Create("/a", sequential=1),
        lambda: Create("/a", parents=None),
        lambda: Create("/a", ephemeral="yes"),
        lambda: SetData("/a/", b""),
        lambda: SetData("/a", b"", -2),
        lambda: SetData("/a", b"", 1.0),
        lambda: SetData("/a", b"", True),
        lambda: SetData("/a", b"", 2**63),
        lambda: Delete("/"),
        lambda: Delete("/a", -5),
        lambda: Check("/a", "1"),
        lambda: Check("//", 0),
        lambda: Multi("not ops"),
        lambda: Multi((Multi(()),)),
        lambda: Multi((CloseSession(1),)),
        lambda: Multi(("create",)),
        lambda: Multi((Check("/a", 0),) * (MAX_MULTI_OPS + 1)),
        lambda: CloseSession(0),
        lambda: CloseSession(-1),
        lambda: CloseSession(True),
        lambda: Create("/a", container=1),
        lambda: Create("/a", ephemeral=True, container=True),
        lambda: Create("/a", ephemeral=True, ttl_ms=5),
        lambda: Create("/a", container=True, ttl_ms=5),
        lambda: Create("/a", container=True, sequential=True),
        lambda: Create("/a", ttl_ms=-1),
        lambda: Create("/a", ttl_ms=2**40 + 1),
        lambda: Create("/a", ttl_ms=True),
        lambda: Create("/a", ttl_ms=5.0),
        lambda: OpenSession(0),
        lambda: OpenSession(-1),
        lambda: OpenSession(True),
        lambda: OpenSession(2**31 + 1),
        lambda: OpenSession(1000.0),
        lambda: OpenSession("1000"),
        lambda: OpenSession(1000, b"short"),
        lambda: OpenSession(1000, "x" * 16),  # type: ignore[arg-type]
        lambda: OpenSession(1000, bytearray(16)),  # type: ignore[arg-type]
        lambda: Reap("/a"),
        lambda: Reap(("/a/",)),
        lambda: Reap((b"/a",)),
        lambda: Reap(("/a",) * (MAX_REAP_PATHS + 1)),
        lambda: Multi((OpenSession(1),)),
        lambda: Multi((Reap(()),)),
    ],
)
def test_invalid_operations_cannot_be_built(build):
    with pytest.raises(BadArguments):
        build()


def test_data_over_the_limit_is_data_too_large():
    Create("/a", b"x" * MAX_DATA)
    SetData("/a", b"x" * MAX_DATA)
    with pytest.raises(DataTooLarge):
        Create("/a", b"x" * (MAX_DATA + 1))
    with pytest.raises(DataTooLarge):
        SetData("/a", b"x" * (MAX_DATA + 1))


def test_a_multi_is_bounded_by_its_total_data():
    half = b"x" * (MAX_DATA // 2)
    Multi((Create("/a", half), SetData("/b", half)))
    with pytest.raises(DataTooLarge):
        Multi((Create("/a", half), SetData("/b", half + b"x")))


def test_the_limits_of_the_new_operations_are_accepted():
    assert Create("/a", ttl_ms=2**40, sequential=True).ttl_ms == 2**40
    assert Create("/a", container=True, parents=True).container
    assert OpenSession(1).timeout_ms == 1
    assert OpenSession(2**31).timeout_ms == 2**31
    assert len(Reap(("/a",) * MAX_REAP_PATHS).paths) == MAX_REAP_PATHS
    assert Reap(["/a", "/b"]) == Reap(("/a", "/b"))  # type: ignore[arg-type]


def test_multi_accepts_a_list_and_stores_a_tuple():
    m = Multi([Check("/a", -1)])  # type: ignore[arg-type]
    assert m.ops == (Check("/a", -1),)
    assert m == Multi((Check("/a", -1),))
    assert hash(m) == hash(Multi((Check("/a", -1),)))


def test_defaults_match_zookeeper():
    assert Create("/a") == Create("/a", b"", False, False, False, False, 0)
    assert SetData("/a", b"").version == -1
    assert Delete("/a").version == -1


# --------------------------------------------------------------------------- round trips


@given(ops)
def test_every_operation_round_trips(op):
    assert decode_op(encode_op(op)) == op


@given(st.integers(min_value=0, max_value=2**63 - 1), ops)
def test_every_command_round_trips(time_ms, op):
    assert decode_command(encode_command(time_ms, op)) == (time_ms, op)


def test_the_largest_operations_fit_the_request_limit():
    big = Multi(tuple(Check("/" + "a" * 4000 + str(i), -1) for i in range(MAX_MULTI_OPS)))
    assert len(encode_op(big)) <= MAX_REQUEST_BYTES
    assert decode_op(encode_op(big)) == big
    full = Create("/" + "a" * 4000, b"x" * MAX_DATA, parents=True, ttl_ms=2**40)
    assert decode_command(encode_command(2**63 - 1, full))[1] == full
    reap = Reap(tuple("/" + "a" * 4085 + str(i) for i in range(MAX_REAP_PATHS)))
    assert len(encode_op(reap)) <= MAX_REQUEST_BYTES
    assert decode_command(encode_command(2**63 - 1, reap))[1] == reap


def test_encoding_refuses_non_operations_and_bad_times():
    with pytest.raises(BadArguments):
        encode_op("create /a")  # type: ignore[arg-type]
    with pytest.raises(BadArguments):
        encode_command(-1, Check("/a", -1))
    with pytest.raises(BadArguments):
        encode_command(1.5, Check("/a", -1))  # type: ignore[arg-type]


# ------------------------------------------------------------------------ malformed bytes

CREATE = ["create", "/a", b"", False, False, False, False, 0]
MALFORMED_OPS = [
    b"",
    b"\xc1",  # a byte msgpack never uses
    pack(CREATE) + b"\x00",  # trailing bytes
    pack(CREATE)[:-1],  # truncated
    pack(None),
    pack([]),
    pack({"op": "create"}),
    pack([1, "/a"]),
    pack(["nope", "/a"]),
    pack(["create", "/a", b""]),  # too few fields
    pack(["create", "/a", b"", False, False, False]),  # the format before containers and TTLs
    pack([*CREATE, 0]),  # too many
    pack(["create", "/a", "str data", False, False, False, False, 0]),
    pack(["create", b"/a", b"", False, False, False, False, 0]),  # path as bytes
    pack(["create", "/a/", b"", False, False, False, False, 0]),
    pack(["create", "/a", b"", 0, False, False, False, 0]),  # int flag
    pack(["create", "/a", b"", False, False, False, 1, 0]),  # int container flag
    pack(["create", "/a", b"", False, False, False, False, -1]),
    pack(["create", "/a", b"", False, False, False, False, 1.5]),
    pack(["create", "/a", b"", False, False, False, False, None]),
    pack(["create", "/a", b"", False, False, False, False, 2**40 + 1]),
    pack(["create", "/a", b"", False, False, True, True, 0]),  # ephemeral container
    pack(["create", "/a", b"", False, False, True, False, 10]),  # ephemeral TTL
    pack(["create", "/a", b"", False, False, False, True, 10]),  # container TTL
    pack(["create", "/a", b"", True, False, False, True, 0]),  # sequential container
    pack(["set", "/a", b"", 1.0]),
    pack(["set", "/a", b"", -2]),
    pack(["set", "/a", b"", 2**64 - 1]),
    pack(["delete", "/", -1]),
    pack(["check", "/a", None]),
    pack(["multi", "ops"]),
    pack(["multi", [["multi", []]]]),
    pack(["multi", [["close", 1]]]),
    pack(["multi", [["check", "/a", 0]] * (MAX_MULTI_OPS + 1)]),
    pack(["close", 0]),
    pack(["close", "1"]),
    pack(["open"]),
    pack(["open", 1000, 0]),
    pack(["open", FIRST_CLIENT_ID, 1000]),  # format 2 named the session: no longer
    pack(["open", 2**64 - 1]),
    pack(["open", 0]),
    pack(["open", 2**31 + 1]),
    pack(["open", True]),
    pack(["open", "1000"]),
    pack(["open", 1000]),  # format 3: no secret hash
    pack(["open", 1000, b"x" * 15]),
    pack(["open", 1000, "x" * 16]),
    pack(["open", 1000, b"x" * 16, 0]),
    pack(["reap"]),
    pack(["reap", "/a"]),
    pack(["reap", ["/a"], 0]),
    pack(["reap", ["/a", "/b/"]]),
    pack(["reap", ["/a", None]]),
    pack(["reap", [b"/a"]]),
    pack(["reap", ["/a"] * (MAX_REAP_PATHS + 1)]),
    pack(["reap", {"/a": 1}]),
    pack(["multi", [["open", 1000]]]),
    pack(["multi", [["reap", ["/a"]]]]),
    pack(["check", "/a", msgpack.ExtType(1, b"x")]),
    b"\xa2\xff\xfe",  # a str that is not UTF-8
    b"\x91" * 100_000,  # nesting deeper than msgpack allows
]


@pytest.mark.parametrize("data", MALFORMED_OPS)
def test_malformed_operations_raise_bad_arguments(data):
    with pytest.raises(BadArguments):
        decode_op(data)


def test_non_bytes_raise_bad_arguments():
    with pytest.raises(BadArguments):
        decode_op("create /a")  # type: ignore[arg-type]
    with pytest.raises(BadArguments):
        decode_command(bytearray(encode_command(1, Check("/a", -1))))  # type: ignore[arg-type]


def test_oversized_requests_are_refused_before_unpacking():
    with pytest.raises(DataTooLarge):
        decode_op(b"\x00" * (MAX_REQUEST_BYTES + 1))
    with pytest.raises(DataTooLarge):
        decode_op(pack(["create", "/a", b"x" * (MAX_DATA + 1), False, False, False, False, 0]))


OP = ["check", "/a", -1]
MALFORMED_COMMANDS = [
    pack(OP),
    pack([COMMAND_FORMAT, 5]),
    pack([COMMAND_FORMAT + 1, 5, OP]),
    pack([COMMAND_FORMAT - 1, 5, OP]),  # the format before sessions
    pack([True, 5, OP]),
    pack([COMMAND_FORMAT, -1, OP]),
    pack([COMMAND_FORMAT, 5.0, OP]),
    pack([COMMAND_FORMAT, 5, OP, 0]),
    pack([COMMAND_FORMAT, 5, ["check", "/a"]]),
]


@pytest.mark.parametrize("data", MALFORMED_COMMANDS)
def test_malformed_commands_raise_bad_arguments(data):
    with pytest.raises(BadArguments):
        decode_command(data)


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_bad_arguments(data):
    for decode in (decode_op, decode_command):
        with contextlib.suppress(BadArguments):
            decode(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32), ops, st.data())
def test_corrupted_encodings_raise_only_bad_arguments(time_ms, op, data):
    """Flip, cut or insert bytes in a valid command: it decodes to some command or to
    BadArguments, never to another exception."""
    raw = bytearray(encode_command(time_ms, op))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and where < len(raw):
            raw[where] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[where:]
        else:
            raw.insert(where, data.draw(st.integers(0, 255)))
    try:
        time2, op2 = decode_command(bytes(raw))
    except BadArguments:
        return
    assert decode_command(encode_command(time2, op2)) == (time2, op2)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text(max_size=5)
        | st.binary(max_size=5)
        | st.sampled_from(["create", "set", "delete", "check", "multi", "close", "open", "reap"]),
        lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=20,
    )
)
def test_random_msgpack_values_raise_only_bad_arguments(value):
    try:
        op = decode_op(pack(value))
    except BadArguments:
        return
    assert decode_op(encode_op(op)) == op
