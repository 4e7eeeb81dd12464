"""A leader's Accepts leave before its own fsync (``Ready.early``), and its own vote counts only
once durable: the rules that make sending them early safe, each shown failing without it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from helpers import cmd, drain, elected, make_node, val

from paxctl.core.messages import Accept, Accepted, Message
from paxctl.core.node import Node, Role
from paxctl.core.state import Ready
from paxctl.core.types import Applied, Ballot, Snapshot
from paxctl.server.driver import Driver


def leader(n: int = 3) -> Node:
    """Node 1 leading (elected by hand; a single node by its own timer), its phase 1 done
    and its own vote for the phase's no-ops counted (that happens at advance())."""
    if n == 1:
        node = make_node(1, n=1)
        while node.role is not Role.LEADER:
            node.tick()
        drain(node)
    else:
        node = elected(n)
    drain(node)
    return node


def test_a_batch_of_new_commands_sends_its_accepts_early_and_nothing_else():
    node = leader()
    node.propose(cmd(7, 1))
    r = node.ready()
    assert r.early == 2  # one Accept to each peer, ahead of everything else
    assert all(type(m) is Accept and m.frm == 1 for m in r.messages[: r.early])
    assert {m.to for m in r.messages[: r.early]} == {2, 3}
    assert [v.value for v in r.votes] == [val(cmd(7, 1))]  # its own vote, persisted in this batch
    assert r.hard_state is None
    node.advance()


def test_the_leaders_own_vote_counts_only_after_advance():
    """Between ready() (the vote handed over to be persisted) and advance() (persisted), one
    follower's vote is not a majority: the leader's own is not counted yet. Counting it early
    would let a commit index that rests on a vote the leader may still lose reach the
    followers in Accepts that left before its fsync."""
    node = leader()
    node.propose(cmd(7, 1))
    r = node.ready()
    slot = r.votes[0].slot
    node.step(Accepted(2, 1, node.ballot, (slot,), 0))  # arrives while the driver persists
    assert node.learner.commit < slot
    assert node.advance() is True  # its own vote counts now: more work for the next pass
    assert node.learner.commit == slot
    assert [a.slot for a in node.ready().committed] == [slot]
    node.advance()


def test_no_accept_leaves_early_from_a_batch_that_changes_the_promise():
    """A higher ballot's Accept in the same batch raises the promise (this leader steps
    down): the Accept it queued before at its own ballot waits for that fsync with the rest."""
    node = leader()
    node.propose(cmd(7, 1))
    node._end_batch()  # its Accepts are queued (ready() would do it first)
    node.step(Accept(3, 1, Ballot(node.ballot.round + 5, 3), (), 0))
    assert node.role is Role.FOLLOWER
    r = node.ready()
    assert r.hard_state is not None
    assert r.early == 0
    node.advance()


def test_a_follower_sends_nothing_early():
    node = make_node(2)
    node.step(Accept(1, 2, Ballot(1, 1), (), 0))
    r = node.ready()
    assert r.early == 0
    assert any(type(m) is Accepted for m in r.messages)
    node.advance()


# ------------------------------------------------------------------ the driver


@dataclass
class Recorder:
    """Disk, application and early-send hook in one, recording the order of the calls."""

    calls: list[str] = field(default_factory=list)
    fail: bool = False

    def persist(self, ready: Ready) -> None:
        self.calls.append("persist")
        if self.fail:
            raise OSError("fsync failed")

    def send_early(self, msgs: tuple[Message, ...]) -> None:
        self.calls.append(f"early:{len(msgs)}")

    def install(self, snapshot: Snapshot) -> None: ...

    def apply(self, applied: Applied) -> None: ...

    def read_done(self, read: object) -> None: ...

    def snapshot(self) -> bytes:
        return b""


def test_the_driver_hands_early_accepts_over_before_the_fsync_and_the_rest_after():
    node = leader()
    rec = Recorder()
    driver: Driver[object] = Driver(node, rec, rec, send_early=rec.send_early)
    node.propose(cmd(7, 1))
    done = driver.run()
    assert rec.calls == ["early:2", "persist"]
    assert not any(type(m) is Accept for m in done.outputs)  # not sent twice


def test_without_the_hook_accepts_go_out_after_the_fsync():
    node = leader()
    rec = Recorder()
    driver: Driver[object] = Driver(node, rec, rec)
    node.propose(cmd(7, 1))
    done = driver.run()
    assert rec.calls == ["persist"]
    assert sum(type(m) is Accept for m in done.outputs) == 2


def test_a_failed_fsync_sends_nothing_but_the_early_accepts():
    node = leader()
    rec = Recorder(fail=True)
    driver: Driver[object] = Driver(node, rec, rec, send_early=rec.send_early)
    node.propose(cmd(7, 1))
    with pytest.raises(OSError):
        driver.run()
    assert rec.calls == ["early:2", "persist"]
    assert driver.take() == []


def test_a_single_node_cluster_chooses_without_waiting_for_another_event():
    """Its own vote is its quorum and counts at advance(): the driver reports ``more`` so
    the shell runs the pass that applies it at once, not at the next tick."""
    node = leader(n=1)
    rec = Recorder()
    driver: Driver[object] = Driver(node, rec, rec, send_early=rec.send_early)
    node.propose(cmd(7, 1))
    first = driver.run()
    assert first.more
    second = driver.run()
    assert second.ready is not None
    assert [c for a in second.ready.committed for c in a.commands] == [cmd(7, 1)]
