"""One-shot writes (``Once``) and create-or-set (``Put``) in the state machine.

A one-shot write has no session: its outcome is kept in a bounded table per temporary id
(statemachine/once.py). These tests hold it to exactly-once: a retry is answered, never applied
again, even after the table forgot the first attempt (then the answer is ``Indeterminate``);
only temporary ids may use it; the table stays bounded; and it is replicated state (snapshot,
digest) like the rest.
"""

from __future__ import annotations

import msgpack
import pytest
from znode_helpers import C1, Driver, zxid

from paxctl.statemachine import (
    TEMP_CLIENT_BIT,
    BadArguments,
    Check,
    Create,
    Multi,
    Once,
    Outcome,
    Put,
    SetData,
    StateMachine,
    decode_op,
    encode_command,
    encode_op,
)
from paxctl.statemachine.once import ONCE_KEEP, OnceTable

T1, T2 = TEMP_CLIENT_BIT | 101, TEMP_CLIENT_BIT | 102


def once(sm: StateMachine, slot: int, op, client: int, seq: int, after: int = 0) -> Outcome:
    out = sm.apply_command(zxid(slot), encode_command(slot, Once(after, op)), client, seq)
    assert out is not None
    return out


def test_a_one_shot_write_applies_once_however_often_it_is_chosen():
    sm = Driver(sessions=()).sm
    op = Create("/job-", b"x", sequential=True)
    first = once(sm, 1, op, T1, 1)
    assert first == Outcome(True, "/job-0000000000") and sm.last_fresh
    digest = sm.digest()
    # The answer was lost: the client resent it, and the retry was chosen in a later slot.
    assert once(sm, 2, op, T1, 1) == first and not sm.last_fresh
    assert sm.tree.children("/") == ["job-0000000000"] and sm.last_events == ()
    assert sm.is_applied(T1, 1) and sm.cached(T1, 1) == first
    assert sm.digest() != digest  # the zxid moved; nothing else did
    assert sm.tree.get("/job-0000000000")[0] == b"x"
    # The client's next write is new; a late copy of the first is answered as "applied earlier".
    assert once(sm, 3, SetData("/job-0000000000", b"y"), T1, 2).ok
    assert sm.apply_command(zxid(4), encode_command(4, Once(0, op)), T1, 1) is None
    assert sm.tree.children("/") == ["job-0000000000"]


def test_only_a_temporary_id_writes_one_shot_and_it_owns_nothing():
    d = Driver()  # C1..C3 are open sessions
    d.run(Create("/a"), client=C1)
    out = d.run(Once(0, SetData("/a", b"forged")), client=C1)  # a session's id: refused
    assert out.error_code == "BadArguments" and d.sm.tree.get("/a")[0] == b""
    out = d.run(Once(0, SetData("/a", b"x")), client=7)  # the cluster's own ids: refused
    assert out.error_code == "BadArguments" and d.sm.tree.get("/a")[0] == b""
    # An ephemeral needs a session: a one-shot write cannot carry one, built or decoded.
    with pytest.raises(BadArguments):
        Once(0, Create("/e", ephemeral=True))
    with pytest.raises(BadArguments):
        Once(0, Multi((Create("/e", ephemeral=True),)))
    wire = msgpack.packb(["once", 0, ["create", "/e", b"", False, False, True, False, 0]])
    with pytest.raises(BadArguments):
        decode_op(wire)
    for inner in (["open", 1000, bytes(16)], ["close", C1], ["once", 0, ["check", "/", -1]]):
        with pytest.raises(BadArguments):
            decode_op(msgpack.packb(["once", 0, inner]))
    assert decode_op(encode_op(Once(5, Put("/p", b"v")))) == Once(5, Put("/p", b"v"))


def test_a_one_shot_write_claiming_a_zxid_from_the_future_is_refused():
    sm = StateMachine()
    out = once(sm, 3, Create("/a"), T1, 1, after=zxid(3))
    assert out.error_code == "BadArguments" and sm.tree.exists("/a") is None


def test_the_table_is_bounded_and_a_retry_it_may_have_forgotten_is_never_applied_again():
    sm = StateMachine()
    op = Create("/q-", sequential=True)
    assert once(sm, 1, op, T1, 1).value == "/q-0000000000"
    assert once(sm, 2, op, T1, 2, after=zxid(1)).value == "/q-0000000001"
    # Others' one-shot writes (made-up ids: anyone can) push T1's entry out of the table.
    for i in range(ONCE_KEEP):
        assert once(sm, 3 + i, SetData("/", b""), TEMP_CLIENT_BIT | (1000 + i), 1).ok
    assert len(sm._once) == ONCE_KEEP  # bounded, whatever the number of ids
    assert not sm.is_applied(T1, 2)  # forgotten...
    # ...so late copies of both writes get "outcome unknown", applied neither time. The refusal
    # is not recorded: had it been, the copy of seq 2 would have looked new after seq 1's.
    slot = 3 + ONCE_KEEP
    for seq, after in ((1, 0), (2, zxid(1)), (2, zxid(1))):
        out = once(sm, slot, op, T1, seq, after=after)
        assert out.error_code == "Indeterminate", out
        slot += 1
    assert sm.tree.children("/") == ["q-0000000000", "q-0000000001"]
    # A client that saw a zxid past the horizon before sending is certainly new: applied.
    seen = zxid(slot - 1)
    assert once(sm, slot, op, T2, 1, after=seen).value == "/q-0000000002"


def test_the_one_shot_table_travels_in_snapshots_and_counts_in_the_digest():
    sm = StateMachine()
    once(sm, 1, Put("/a", b"1"), T1, 1)
    once(sm, 2, Put("/a", b"2"), T2, 1)
    restored = StateMachine.restore(sm.snapshot())
    assert restored.digest() == sm.digest() == sm.digest_from_scratch()
    assert restored.snapshot() == sm.snapshot()
    # A retry answered from the restored table, as the original would.
    assert once(restored, 3, Put("/a", b"1"), T1, 1) == once(sm, 3, Put("/a", b"1"), T1, 1)
    assert restored.tree.get("/a")[0] == b"2"
    # A replica whose table differed (and nothing else) would show it in its digest.
    other = StateMachine.restore(sm.snapshot())
    other._once = OnceTable()
    assert other.digest() != sm.digest() and other.tree.digest() == sm.tree.digest()


def test_a_snapshot_of_the_previous_format_restores_with_an_empty_table():
    sm = Driver().sm
    snap = msgpack.unpackb(sm.snapshot())
    old = msgpack.packb([4, *snap[1:6]], use_bin_type=True)
    restored = StateMachine.restore(old)
    assert restored.digest() == sm.digest()


def test_a_snapshot_with_a_one_shot_entry_no_log_could_leave_is_refused():
    from paxctl.statemachine import SnapshotError

    sm = StateMachine()
    once(sm, 1, Put("/a", b"1"), T1, 1)
    snap = msgpack.unpackb(sm.snapshot())
    for bad in ([0, [[C1, 1, [True, [0]], zxid(1)]]], [0, [[T1, 1, [True, [0]], zxid(9)]]]):
        with pytest.raises(SnapshotError):
            StateMachine.restore(msgpack.packb([*snap[:6], bad], use_bin_type=True))


def test_put_creates_a_missing_node_and_sets_an_existing_one_in_one_command():
    d = Driver()
    created = d.run(Put("/k", b"v1"))
    assert created.ok and created.value.version == 0 and created.value.czxid == zxid(d.slot)
    assert d.sm.last_events == (("created", "/k"), ("children", "/"))
    changed = d.run(Put("/k", b"v2"))
    assert changed.ok and changed.value.version == 1 and d.sm.tree.get("/k")[0] == b"v2"
    assert d.sm.last_events == (("changed", "/k"),)
    # The parent must exist, as for create; nothing changes when it does not.
    assert d.run(Put("/no/k", b"x")).error_code == "NoNode"
    # Inside a multi, all or nothing, each step seeing the previous ones.
    out = d.run(Multi((Put("/m", b"1"), Put("/m", b"2"), Check("/m", 1))))
    assert out.ok and [s.version for s in out.value[:2]] == [0, 1]
    out = d.run(Multi((Put("/n", b"1"), Check("/n", 5))))
    assert out.error_code == "BadVersion" and out.error_index == 1
    assert d.sm.tree.exists("/n") is None
    assert d.sm.tree.digest() == d.sm.tree.digest_from_scratch()


def test_put_is_deterministic_on_every_replica():
    replicas = [Driver(), Driver()]
    for d in replicas:
        for i, path in enumerate(["/a", "/b", "/a", "/a", "/b"]):
            d.run(Put(path, b"%d" % i), client=C1)
        d.run(Once(0, Put("/c", b"once")), client=T1)
    a, b = replicas
    assert a.sm.snapshot() == b.sm.snapshot() and a.sm.digest() == b.sm.digest()
