"""StateMachine: commands as bytes, monotonic time, the exactly-once reply cache, snapshots.

Sessions, reaping and events have their own files (test_sessions, test_reap, test_events).
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from znode_helpers import C1, C2, C3, C4, Driver, ops, zxid

from paxctl.statemachine import (
    FIRST_CLIENT_ID,
    REAPER_CLIENT,
    TEMP_CLIENT_BIT,
    BadArguments,
    Check,
    CloseSession,
    Create,
    Delete,
    Multi,
    MultiError,
    NodeExists,
    NoNode,
    OpenSession,
    Outcome,
    SetData,
    SnapshotError,
    Stat,
    StateMachine,
    encode_command,
)
from paxctl.statemachine.machine import MACHINE_SNAPSHOT_FORMAT
from paxctl.statemachine.ops import COMMAND_FORMAT, SECRET_HASH_BYTES


def test_a_successful_command_yields_its_result():
    d = Driver()
    out = d.run(Create("/a", b"x"))
    assert out == Outcome(ok=True, value="/a")
    assert out.unwrap() == "/a"
    assert out.error() is None
    out = d.run(SetData("/a", b"y"))
    assert out.ok
    assert isinstance(out.value, Stat)
    assert out.value.version == 1
    assert d.run(Delete("/a")) == Outcome(True, None)
    assert d.sm.last_zxid == zxid(d.slot)


def test_a_failing_command_yields_its_error_code():
    d = Driver()
    out = d.run(Delete("/nope"))
    assert not out.ok
    assert out.error_code == "NoNode"
    assert out.error_index is None
    assert isinstance(out.error(), NoNode)
    with pytest.raises(NoNode):
        out.unwrap()


def test_a_failed_multi_carries_the_index_and_code():
    d = Driver()
    d.run(Create("/a"))
    out = d.run(Multi((Create("/b"), Create("/a"))))
    assert (out.ok, out.error_code, out.error_index) == (False, "NodeExists", 1)
    err = out.error()
    assert isinstance(err, MultiError)
    assert err.index == 1
    assert isinstance(err.error, NodeExists)
    assert d.sm.tree.exists("/b") is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"garbage", msgpack.packb([1, 5, ["nope"]]), msgpack.packb([1, -5, None])],
)
def test_malformed_commands_yield_bad_arguments_and_are_recorded(data):
    sm = StateMachine()
    digest = sm.tree.digest()
    out = sm.apply_command(zxid(1), data, client=4, seq=1)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert sm.cached(4, 1) == out
    assert sm.tree.digest() == digest


@given(st.binary(max_size=100))
def test_apply_command_never_raises_on_any_bytes(data):
    sm = StateMachine()
    out = sm.apply_command(zxid(1), data, client=1, seq=1)
    assert out.ok or out.error_code is not None


# ------------------------------------------------------------------------------------ time


def test_time_never_goes_backwards():
    d = Driver()
    d.run(Create("/a"), time_ms=5000)
    d.run(Create("/b"), time_ms=3000)  # a new leader whose clock is behind
    assert d.sm.tree.stat("/b").ctime == 5000
    d.run(SetData("/a", b"x"), time_ms=4000)
    assert d.sm.tree.stat("/a").mtime == 5000
    d.run(SetData("/a", b"y"), time_ms=6000)
    assert d.sm.tree.stat("/a").mtime == 6000
    assert d.sm.last_time == 6000


def test_a_failed_command_still_advances_time():
    d = Driver()
    d.run(Delete("/nope"), time_ms=9000)
    d.run(Create("/a"), time_ms=1)
    assert d.sm.tree.stat("/a").ctime == 9000


# ---------------------------------------------------------------------------- exactly once


def test_the_last_outcome_of_each_client_is_cached():
    d = Driver()  # the sessions were opened under temporary ids: their own seqs start at 1
    first = d.run(Create("/a"), client=C1)
    other = d.run(Create("/a"), client=C2)
    assert d.sm.cached(C1, 1) == first
    assert d.sm.cached(C2, 1) == other
    assert d.sm.cached(C1, 2) is None
    assert d.sm.cached(C4, 1) is None
    second = d.run(SetData("/a", b"x"), client=C1)
    assert d.sm.cached(C1, 2) == second
    assert d.sm.cached(C1, 1) is None  # one entry per client: the last


def opened() -> StateMachine:
    """A machine with session C1 open (opened at zxid(1) under a temporary id)."""
    sm = StateMachine()
    out = sm.apply_command(zxid(1), encode_command(1, OpenSession(5000)), TEMP_CLIENT_BIT, 1)
    assert out == Outcome(True, C1)
    return sm


@pytest.mark.parametrize("client", [C1, 2])  # a client session, and one of the cluster's ids
def test_a_retry_reaching_apply_is_answered_from_the_cache_not_reapplied(client):
    sm = opened()
    cmd = encode_command(1, Create("/s-", sequential=True))
    first = sm.apply_command(zxid(2), cmd, client=client, seq=2)
    again = sm.apply_command(zxid(3), cmd, client=client, seq=2)
    assert again == first == Outcome(True, "/s-0000000000")
    assert not sm.last_fresh and sm.last_events == ()
    assert sm.tree.children("/") == ["s-0000000000"]
    assert sm.last_zxid == zxid(3)  # its zxid passed, changing nothing


@pytest.mark.parametrize("client", [C1, 2])
def test_an_older_seq_is_applied_earlier_result_not_kept_and_changes_nothing(client):
    sm = opened()
    sm.apply_command(zxid(2), encode_command(1, Create("/a")), client=client, seq=5)
    tree = sm.tree.digest()
    out = sm.apply_command(zxid(3), encode_command(1, Create("/b")), client=client, seq=4)
    assert out is None and not sm.last_fresh  # the server answers Indeterminate
    assert sm.is_applied(client, 4) and sm.cached(client, 4) is None
    assert sm.tree.exists("/b") is None and sm.tree.digest() == tree
    assert sm.cached(client, 5) == Outcome(True, "/a")


def test_ephemerals_belong_to_the_client_that_created_them():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C2)
    assert d.sm.tree.stat("/e").ephemeral_owner == C2
    assert d.run(CloseSession(C2), client=REAPER_CLIENT).value == ["/e"]
    assert d.sm.tree.exists("/e") is None


@pytest.mark.parametrize("client", [REAPER_CLIENT, 2, FIRST_CLIENT_ID - 1])
def test_the_clusters_own_ids_write_without_a_session_but_own_no_ephemerals(client):
    d = Driver(sessions=())
    assert d.run(Create("/a"), client=client) == Outcome(True, "/a")
    out = d.run(Create("/e", ephemeral=True), client=client)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    out = d.run(Multi((Create("/b"), Create("/e", ephemeral=True))), client=client)
    assert (out.ok, out.error_code, out.error_index) == (False, "BadArguments", None)
    assert d.sm.tree.children("/") == ["a"]
    assert d.sm.cached(client, 3) == out


# ------------------------------------------------------------------- outcomes on the wire


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(True, None),
        Outcome(True, "/a"),
        Outcome(True, Stat(*range(11))),
        Outcome(True, ["/a", Stat(), None]),
        Outcome(True, []),
        Outcome(True, 30_000),
        Outcome(True, 0),
        Outcome(False, None, "NoNode", "/a"),
        Outcome(False, None, "SessionExpired", "gone"),
        Outcome(False, None, "BadVersion", "msg", 3),
    ],
)
def test_outcomes_round_trip(outcome):
    assert Outcome.from_wire(msgpack.unpackb(msgpack.packb(outcome.to_wire()))) == outcome


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        [True],
        [True, [9]],
        [True, [3, [[3, []]]]],
        [False, 1, "", None],
        [1, [0]],
        [True, [4]],
        [True, [4, -1]],
        [True, [4, 2**63]],
        [True, [4, True]],
        [True, [4, 1.0]],
        [True, [4, 1, 2]],
        [True, [3, [[4, 1]]]],  # an int inside a list
    ],
)
def test_bad_outcome_wire_raises_value_error(wire):
    with pytest.raises(ValueError):
        Outcome.from_wire(wire)


# ------------------------------------------------------------------ snapshots and digests


def busy() -> Driver:
    d = Driver()
    d.run(Create("/a", b"1"), client=C1)
    d.run(Create("/e", ephemeral=True), client=C2)
    d.run(Multi((Create("/b"), SetData("/a", b"2"))), client=C1)
    d.run(Multi((Check("/a", 0), Delete("/b"))), client=C3)
    d.run(Create("/box", container=True), client=C3)
    d.run(Create("/t", ttl_ms=100), client=C3)
    d.sm.apply_command(zxid(99), b"junk", client=4, seq=1)
    return d


def test_snapshot_restores_tree_cache_and_time():
    d = busy()
    sm2 = StateMachine.restore(d.sm.snapshot())
    assert sm2.digest() == d.sm.digest() == d.sm.digest_from_scratch()
    assert sm2.snapshot() == d.sm.snapshot()
    assert (sm2.last_time, sm2.last_zxid) == (d.sm.last_time, d.sm.last_zxid)
    assert sm2.sessions() == d.sm.sessions() == dict.fromkeys((C1, C2, C3), 10_000)
    assert sm2.tree.kind("/t") == ("ttl", 100)
    assert sm2.tree.kind("/box") == ("container", 0)
    assert sm2.tree.ephemerals(C2) == ["/e"]
    for client, seq in [(C1, 2), (C2, 1), (C3, 3), (4, 1)]:
        assert sm2.cached(client, seq) == d.sm.cached(client, seq) is not None
    # Both continue identically, including the time floor.
    d2 = Driver(sm2, sessions=())
    d2.slot, d2.seqs = d.slot, dict(d.seqs)
    assert d.run(Create("/c"), time_ms=1) == d2.run(Create("/c"), time_ms=1)
    assert sm2.tree.stat("/c") == d.sm.tree.stat("/c")
    assert sm2.digest() == d.sm.digest()


def test_the_digest_covers_the_reply_cache_and_time():
    a, b = busy(), busy()
    assert a.sm.digest() == b.sm.digest()
    a.sm.apply_command(zxid(200), b"junk", client=5, seq=1)
    b.sm.apply_command(zxid(200), b"junk", client=5, seq=2)
    assert a.sm.tree.digest() == b.sm.tree.digest()
    assert a.sm.digest() != b.sm.digest()
    c, d = busy(), busy()
    c.run(Check("/a", -1), time_ms=10**9)
    d.run(Check("/a", -1), time_ms=10**9 + 1)
    assert c.sm.digest() != d.sm.digest()


CLIENTS = st.sampled_from([REAPER_CLIENT, 2, C1, C2, C3, C4, TEMP_CLIENT_BIT | 1])


@st.composite
def commands(draw) -> tuple[int, object]:
    """A client and an operation: mostly tree operations, also opening and closing sessions
    (an open in slot 4 opens C4; one from anything but the temporary id is refused)."""
    client = draw(CLIENTS)
    op = draw(
        st.one_of(
            ops,
            st.builds(OpenSession, st.integers(1, 10)),
            st.builds(CloseSession, st.sampled_from([C1, C2, C3, C4, 1])),
        )
    )
    return client, op


@given(st.lists(commands(), max_size=25))
def test_replicas_fed_the_same_commands_agree(command_list):
    replicas = [Driver(), Driver()]
    outcomes = []
    for client, op in command_list:
        outcomes.append([(r.run(op, client), r.sm.last_events) for r in replicas])
    assert all(a == b for a, b in outcomes)
    a, b = (r.sm for r in replicas)
    assert a.sessions() == b.sessions()
    assert a.digest() == b.digest() == a.digest_from_scratch()
    restored = StateMachine.restore(a.snapshot())
    assert restored.digest() == a.digest()
    assert restored.snapshot() == a.snapshot()


def pack(x) -> bytes:
    return msgpack.packb(x, use_bin_type=True)


TREE = [2, [["/", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]]
EPHEMERAL = [2, [TREE[1][0], ["/e", b"", 1, 1, 1, 1, 1, 0, 0, C1, 0, 0]]]
F = MACHINE_SNAPSHOT_FORMAT
Z = 2**40  # a last zxid past every session id used below
OK = [True, [0]]
H = bytes(SECRET_HASH_BYTES)  # a session's secret hash


def snap(doc: list) -> bytes:
    """A snapshot of this format: ``doc`` with an empty one-shot table as its last part."""
    return pack([*doc, [0, []]])


BAD = [
    b"",
    b"\xc1",
    pack([F + 1, TREE, 0, 0, [], []]),
    pack([2, TREE, 0, 0, []]),  # the format before sessions
    snap([F, TREE, 0, 0, []]),
    snap([F, TREE, -1, 0, [], []]),
    snap([F, TREE, 0, 0, {}, []]),
    snap([F, [9], 0, 0, [], []]),
    snap([F, TREE, 0, 0, [[1, 1]], []]),
    snap([F, TREE, 0, 0, [[1, 1, OK], [1, 2, OK]], []]),
    snap([F, TREE, 0, 0, [[1, 1, [True, [7]]]], []]),
    snap([F, TREE, 0, Z, [], {}]),
    snap([F, TREE, 0, Z, [], [[C1]]]),
    snap([F, TREE, 0, Z, [], [[C1, 0, H]]]),  # no timeout
    snap([F, TREE, 0, Z, [], [[C1, 2**31 + 1, H]]]),
    snap([F, TREE, 0, Z, [], [[C1, True, H]]]),
    snap([F, TREE, 0, Z, [], [[C1, 10]]]),  # no secret hash (format 3)
    snap([F, TREE, 0, Z, [], [[C1, 10, H[:-1]]]]),  # a hash too short
    snap([F, TREE, 0, Z, [], [[C1, 10, H.hex()]]]),  # a hash that is no bytes
    snap([F, TREE, 0, Z, [], [[FIRST_CLIENT_ID - 1, 10, H]]]),  # not a client id
    snap([F, TREE, 0, 2**63 - 1, [], [[TEMP_CLIENT_BIT, 10, H]]]),  # a temporary id, no session
    snap([F, TREE, 0, Z, [], [[C2, 10, H], [C1, 10, H]]]),  # unordered
    snap([F, TREE, 0, Z, [], [[C1, 10, H], [C1, 11, H]]]),  # repeated
    snap([F, TREE, 0, C1 - 1, [], [[C1, 10, H]]]),  # a session id is a zxid applied already
    snap([F, TREE, 0, Z, [[C1, 1, OK]], []]),  # a reply kept for a session that ended
    snap([F, TREE, 0, Z, [[TEMP_CLIENT_BIT, 1, OK]], []]),  # ... or for a temporary id
    snap([F, EPHEMERAL, 0, Z, [], []]),  # an ephemeral of a closed session
    snap([F, EPHEMERAL, 0, Z, [], [[C2, 10, H]]]),
    pack([3, TREE, 0, 0, [], []]),  # format 3: sessions had no secret hash
    pack([F, TREE, 0, 0, [], []]),  # this format without the one-shot table
]


def test_a_consistent_hand_made_snapshot_restores():
    sm = StateMachine.restore(snap([F, EPHEMERAL, 0, C1, [[2, 1, OK], [C1, 1, OK]], [[C1, 10, H]]]))
    assert sm.sessions() == {C1: 10}
    assert sm.tree.ephemerals(C1) == ["/e"]
    assert sm.cached(C1, 1) == sm.cached(2, 1) == Outcome(True, None)


@pytest.mark.parametrize("data", BAD)
def test_bad_machine_snapshots_raise_snapshot_error(data):
    with pytest.raises(SnapshotError):
        StateMachine.restore(data)


def test_bad_arguments_outcome_from_malformed_time():
    sm = StateMachine()
    out = sm.apply_command(zxid(1), pack([COMMAND_FORMAT, "now", ["check", "/", -1]]), 1, 1)
    assert out.error_code == BadArguments.code
