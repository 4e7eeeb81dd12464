"""The leader proposes a ``Reap`` of an empty container only once two sweeps in a row found it
empty with no child change in between: a lock in use (emptied for a moment at each release)
is not reaped under its contenders, an abandoned one is, one sweep later. TTL nodes are not
held back."""

from __future__ import annotations

from paxctl.server.liveness import SessionKeeper
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import Create, Delete


def test_a_container_busy_between_sweeps_is_held_back_and_a_quiet_one_reaped():
    m = StateMachine()
    tree = m.tree
    tree.apply(Create("/lock", container=True), 1, 0)
    tree.apply(Create("/idle", container=True), 2, 0)
    tree.apply(Create("/ttl", ttl_ms=1), 3, 0)
    for zxid, path in enumerate(("/lock/a", "/idle/a"), 4):
        tree.apply(Create(path), zxid, 0)
        tree.apply(Delete(path), zxid + 10, 0)
    keeper = SessionKeeper(1, (1,))
    sweep = m.reap_candidates(100)
    assert sweep == ["/idle", "/lock", "/ttl"]
    assert keeper._settled(m, sweep) == ["/ttl"]  # first sight of the empty containers
    tree.apply(Create("/lock/b"), 30, 0)  # the lock is used again between the sweeps
    tree.apply(Delete("/lock/b"), 31, 0)
    sweep = m.reap_candidates(100)
    assert keeper._settled(m, sweep) == ["/idle", "/ttl"]
    assert keeper._settled(m, m.reap_candidates(100)) == ["/idle", "/lock", "/ttl"]
