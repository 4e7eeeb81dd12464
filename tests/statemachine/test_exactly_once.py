"""Exactly-once in one table, in the state machine, with forgetting.

Session ids are the zxids of their ``OpenSession``, so an ended session's id never comes back:
its entry is dropped when it closes, and a late retry of one of its writes is refused
(``SessionExpired``), never applied, and leaves no state behind. The table, and with it the
snapshot, holds nothing per ended session however many come and go.
"""

from __future__ import annotations

import msgpack
import pytest
from znode_helpers import C1, C2, Driver, zxid

from paxctl.statemachine import (
    REAPER_CLIENT,
    CloseSession,
    Create,
    OpenSession,
    Outcome,
    SetData,
    SnapshotError,
    StateMachine,
    encode_command,
)
from paxctl.statemachine.machine import FORGETFUL_KEEP, MACHINE_SNAPSHOT_FORMAT


def table(sm: StateMachine) -> dict[int, int]:
    """The exactly-once table, ``client -> seq``, as the snapshot carries it."""
    return {c: seq for c, seq, _ in msgpack.unpackb(sm.snapshot())[4]}


def test_session_ids_are_the_zxids_of_their_opens_and_never_repeat():
    d = Driver(sessions=())
    ids = [d.open() for _ in range(5)]
    assert ids == [zxid(slot) for slot in range(1, 6)]
    for s in ids:
        d.run(CloseSession(s), client=s)
    assert d.open() == zxid(11) and d.sm.sessions() == {zxid(11): 10_000}


def test_a_retried_write_of_an_open_session_is_answered_from_the_table_not_applied_twice():
    d = Driver()
    cmd = encode_command(5, Create("/q/job-", sequential=True, parents=True))
    first = d.sm.apply_command(zxid(10), cmd, C1, 1)
    assert d.sm.last_fresh and first == Outcome(True, "/q/job-0000000000")
    events = d.sm.last_events
    assert events
    # The client's answer was lost; it retried elsewhere, and the retry was chosen again.
    again = d.sm.apply_command(zxid(11), cmd, C1, 1)
    assert again == first
    assert not d.sm.last_fresh and d.sm.last_events == ()
    assert d.sm.tree.children("/q") == ["job-0000000000"]
    assert d.sm.is_applied(C1, 1) and not d.sm.is_applied(C1, 2)
    assert d.sm.cached(C1, 1) == first


def test_a_late_retry_of_an_ended_session_is_refused_never_applied_and_keeps_no_state():
    d = Driver()
    write = encode_command(5, SetData("/", b"once"))
    assert d.sm.apply_command(zxid(10), write, C1, 7).ok
    version = d.sm.tree.stat("/").version
    assert table(d.sm)[C1] == 7
    assert d.run(CloseSession(C1), client=REAPER_CLIENT).ok  # expired
    assert C1 not in table(d.sm) and C1 not in d.sm.sessions()
    before = (d.sm.tree.digest(), table(d.sm), d.sm.sessions())
    for seq in (7, 8, 1):  # the very retry, a later one, an older one
        out = d.sm.apply_command(zxid(20 + seq), write, C1, seq)
        assert out is not None and out.error_code == "SessionExpired"
        assert d.sm.last_fresh  # processed, and refused: not answered as a retry
        assert d.sm.last_events == ()
        assert not d.sm.is_applied(C1, seq)
    assert (d.sm.tree.digest(), table(d.sm), d.sm.sessions()) == before
    assert d.sm.tree.stat("/").version == version


def test_a_session_closing_itself_leaves_no_entry_and_its_retried_close_changes_nothing():
    d = Driver()
    d.run(Create("/e", ephemeral=True), client=C2)
    assert d.run(CloseSession(C2), client=C2) == Outcome(True, ["/e"])
    assert C2 not in table(d.sm)
    d.seqs[C2] -= 1  # the close again, with the same seq: its answer was lost
    assert d.run(CloseSession(C2), client=C2) == Outcome(True, [])
    assert d.sm.last_closed is None and C2 not in table(d.sm)


def test_snapshot_restore_keeps_the_table_and_answers_as_the_original():
    d = Driver()
    cmd = encode_command(5, Create("/a"))
    first = d.sm.apply_command(zxid(10), cmd, C1, 3)
    d.run(CloseSession(C2), client=C2)
    restored = StateMachine.restore(d.sm.snapshot())
    assert msgpack.unpackb(d.sm.snapshot())[0] == MACHINE_SNAPSHOT_FORMAT == 5
    assert restored.digest() == d.sm.digest() and table(restored) == table(d.sm)
    for sm in (d.sm, restored):
        assert sm.apply_command(zxid(20), cmd, C1, 3) == first and not sm.last_fresh
        assert sm.apply_command(zxid(21), cmd, C1, 2) is None and not sm.last_fresh
        late = sm.apply_command(zxid(22), encode_command(5, Create("/b")), C2, 1)
        assert late is not None and late.error_code == "SessionExpired"
    assert restored.digest() == d.sm.digest()


def test_a_snapshot_of_the_old_format_is_refused():
    old = msgpack.unpackb(Driver().sm.snapshot())
    old[0] = MACHINE_SNAPSHOT_FORMAT - 1
    with pytest.raises(SnapshotError):
        StateMachine.restore(msgpack.packb(old, use_bin_type=True))


def churn(sm: StateMachine, slot: int, n: int) -> int:
    """``n`` sessions, each opened, used for one write and closed, as a client does them."""
    for k in range(n):
        temp = (1 << 62) | k
        session = sm.apply_command(zxid(slot), encode_command(slot, OpenSession(5000)), temp, 1)
        assert session is not None and type(session.value) is int
        sid = session.value
        data = encode_command(slot + 1, SetData("/churn", b"%d" % k))
        assert sm.apply_command(zxid(slot + 1), data, sid, 1).ok
        assert sm.apply_command(zxid(slot + 2), encode_command(slot + 2, CloseSession(sid)), sid, 2)
        slot += 3
    return slot


def test_snapshot_size_stays_flat_however_many_sessions_come_and_go():
    """The acceptance property, structurally: after 20,000 sessions opened, used for one write
    and closed, the snapshot is the size it was after 1,000 (a few bytes for larger numbers)."""
    sm = StateMachine()
    assert sm.apply_command(zxid(1), encode_command(1, Create("/churn")), REAPER_CLIENT, 1).ok
    slot = churn(sm, 2, 1_000)
    after_1k = len(sm.snapshot())
    churn(sm, slot, 19_000)
    after_20k = len(sm.snapshot())
    assert sm.sessions() == {} and set(table(sm)) == {REAPER_CLIENT}
    assert abs(after_20k - after_1k) <= 16, (after_1k, after_20k)


def test_the_planted_bug_forgets_entries_of_live_sessions_and_applies_a_retry_twice():
    """What ``paxctl sim --plant-bug forget_old_sessions`` plants, shown on one machine (the
    simulator must catch it: tests/sim/test_znodes_sweep.py)."""
    sound, buggy = Driver(), Driver()
    buggy.sm.plant(frozenset({"forget_old_sessions"}))
    write = encode_command(5, Create("/s-", sequential=True))
    for d in (sound, buggy):
        d.sm.apply_command(zxid(10), write, C1, 1)
        for k, s in enumerate(sorted(d.sm.sessions())[1:], start=11):  # newer sessions write
            d.sm.apply_command(zxid(k), encode_command(5, Create(f"/n{k}")), s, 1)
        d.sm.apply_command(zxid(20), write, C1, 1)  # C1's retry, chosen again
    assert len(sound.sm.sessions()) > FORGETFUL_KEEP
    assert not sound.sm.last_fresh and len(sound.sm.tree.children("/")) == 3
    assert buggy.sm.last_fresh and len(buggy.sm.tree.children("/")) == 4  # applied twice
    with pytest.raises(ValueError):
        sound.sm.plant(frozenset({"no_such_bug"}))
