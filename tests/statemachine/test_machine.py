"""StateMachine: commands as bytes, monotonic time, the exactly-once reply cache, snapshots."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from znode_helpers import ops, zxid

from paxctl.statemachine import (
    BadArguments,
    Check,
    CloseSession,
    Create,
    Delete,
    Multi,
    MultiError,
    NodeExists,
    NoNode,
    Outcome,
    SetData,
    SnapshotError,
    Stat,
    StateMachine,
    encode_command,
)
from paxctl.statemachine.machine import MACHINE_SNAPSHOT_FORMAT


class Driver:
    """Applies commands as the node's driver does: one zxid per command, clients' seqs rising."""

    def __init__(self, sm: StateMachine | None = None) -> None:
        self.sm = sm if sm is not None else StateMachine()
        self.slot = 0
        self.seqs: dict[int, int] = {}

    def run(self, op, client: int = 1, time_ms: int | None = None) -> Outcome:
        self.slot += 1
        seq = self.seqs[client] = self.seqs.get(client, 0) + 1
        t = 1000 * self.slot if time_ms is None else time_ms
        return self.sm.apply_command(zxid(self.slot), encode_command(t, op), client, seq)


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
    d = Driver()
    first = d.run(Create("/a"), client=1)
    other = d.run(Create("/a"), client=2)
    assert d.sm.cached(1, 1) == first
    assert d.sm.cached(2, 1) == other
    assert d.sm.cached(1, 2) is None
    assert d.sm.cached(3, 1) is None
    second = d.run(SetData("/a", b"x"), client=1)
    assert d.sm.cached(1, 2) == second
    assert d.sm.cached(1, 1) is None  # one entry per client: the last


def test_a_retry_reaching_apply_is_answered_from_the_cache_not_reapplied():
    sm = StateMachine()
    cmd = encode_command(1, Create("/s-", sequential=True))
    first = sm.apply_command(zxid(1), cmd, client=1, seq=1)
    again = sm.apply_command(zxid(2), cmd, client=1, seq=1)
    assert again == first == Outcome(True, "/s-0000000000")
    assert sm.tree.children("/") == ["s-0000000000"]
    assert sm.last_zxid == zxid(1)


def test_an_older_seq_is_refused_without_effect():
    sm = StateMachine()
    sm.apply_command(zxid(1), encode_command(1, Create("/a")), client=1, seq=5)
    digest = sm.digest()
    out = sm.apply_command(zxid(2), encode_command(1, Create("/b")), client=1, seq=4)
    assert (out.ok, out.error_code) == (False, "BadArguments")
    assert sm.tree.exists("/b") is None
    assert sm.cached(1, 5) == Outcome(True, "/a")
    assert sm.digest() == digest


def test_ephemerals_belong_to_the_client_that_created_them():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=7)
    assert d.sm.tree.stat("/e").ephemeral_owner == 7
    assert d.run(CloseSession(7), client=99).value == ["/e"]
    assert d.sm.tree.exists("/e") is None


# ------------------------------------------------------------------- outcomes on the wire


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(True, None),
        Outcome(True, "/a"),
        Outcome(True, Stat(*range(11))),
        Outcome(True, ["/a", Stat(), None]),
        Outcome(True, []),
        Outcome(False, None, "NoNode", "/a"),
        Outcome(False, None, "BadVersion", "msg", 3),
    ],
)
def test_outcomes_round_trip(outcome):
    assert Outcome.from_wire(msgpack.unpackb(msgpack.packb(outcome.to_wire()))) == outcome


@pytest.mark.parametrize(
    "wire",
    [None, [], [True], [True, [9]], [True, [3, [[3, []]]]], [False, 1, "", None], [1, [0]]],
)
def test_bad_outcome_wire_raises_value_error(wire):
    with pytest.raises(ValueError):
        Outcome.from_wire(wire)


# ------------------------------------------------------------------ snapshots and digests


def busy() -> Driver:
    d = Driver()
    d.run(Create("/a", b"1"), client=1)
    d.run(Create("/e", ephemeral=True), client=2)
    d.run(Multi((Create("/b"), SetData("/a", b"2"))), client=1)
    d.run(Multi((Check("/a", 0), Delete("/b"))), client=3)
    d.sm.apply_command(zxid(99), b"junk", client=4, seq=1)
    return d


def test_snapshot_restores_tree_cache_and_time():
    d = busy()
    sm2 = StateMachine.restore(d.sm.snapshot())
    assert sm2.digest() == d.sm.digest() == d.sm.digest_from_scratch()
    assert sm2.snapshot() == d.sm.snapshot()
    assert (sm2.last_time, sm2.last_zxid) == (d.sm.last_time, d.sm.last_zxid)
    for client, seq in [(1, 2), (2, 1), (3, 1), (4, 1)]:
        assert sm2.cached(client, seq) == d.sm.cached(client, seq) is not None
    # Both continue identically, including the time floor.
    d2 = Driver(sm2)
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


@given(st.lists(st.tuples(st.integers(1, 3), ops), max_size=25))
def test_replicas_fed_the_same_commands_agree(commands):
    replicas = [Driver(), Driver()]
    outcomes = []
    for client, op in commands:
        outcomes.append([r.run(op, client) for r in replicas])
    assert all(a == b for a, b in outcomes)
    a, b = (r.sm for r in replicas)
    assert a.digest() == b.digest() == a.digest_from_scratch()
    restored = StateMachine.restore(a.snapshot())
    assert restored.digest() == a.digest()
    assert restored.snapshot() == a.snapshot()


def pack(x) -> bytes:
    return msgpack.packb(x, use_bin_type=True)


TREE = [1, [["/", b"", 0, 0, 0, 0, 0, 0, 0, 0]]]
BAD = [
    b"",
    b"\xc1",
    pack([MACHINE_SNAPSHOT_FORMAT + 1, TREE, 0, 0, []]),
    pack([MACHINE_SNAPSHOT_FORMAT, TREE, -1, 0, []]),
    pack([MACHINE_SNAPSHOT_FORMAT, TREE, 0, 0, {}]),
    pack([MACHINE_SNAPSHOT_FORMAT, [9], 0, 0, []]),
    pack([MACHINE_SNAPSHOT_FORMAT, TREE, 0, 0, [[1, 1]]]),
    pack([MACHINE_SNAPSHOT_FORMAT, TREE, 0, 0, [[1, 1, [True, [0]]], [1, 2, [True, [0]]]]]),
    pack([MACHINE_SNAPSHOT_FORMAT, TREE, 0, 0, [[1, 1, [True, [7]]]]]),
]


@pytest.mark.parametrize("data", BAD)
def test_bad_machine_snapshots_raise_snapshot_error(data):
    with pytest.raises(SnapshotError):
        StateMachine.restore(data)


def test_bad_arguments_outcome_from_malformed_time():
    sm = StateMachine()
    out = sm.apply_command(zxid(1), pack([1, "now", ["check", "/", -1]]), 1, 1)
    assert out.error_code == BadArguments.code
