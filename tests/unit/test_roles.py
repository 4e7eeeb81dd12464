"""Role transitions: become_follower/candidate/leader are the only writers of a node's role,
leader, ballot, election timer and per-role state, and every role keeps its invariants.

The random drive below runs elections through drops, partitions, crashes and restarts with every
write to those fields watched; a write from anywhere but a transition fails the test.
"""

from __future__ import annotations

import random
from collections import Counter

import helpers
import pytest
from helpers import Cluster, accept, cmd, drain, make_node, of_type, promise, tick_until_campaign

from paxctl.core.election import ElectionTimer
from paxctl.core.messages import Accept, Prepare, PreVote
from paxctl.core.node import Node, Role
from paxctl.core.types import Ballot

#: What only a transition may assign (besides __init__).
GUARDED = {"role", "leader", "ballot", "_heard_leader_at", "_prevote_round", "_leader_since",
           "_heard"}  # fmt: skip
TRANSITIONS = ("become_follower", "become_candidate", "become_leader")


class WatchedTimer(ElectionTimer):
    """The node's election timer, reporting restarts and back-off changes made outside."""

    owner: Watched | None = None

    def __setattr__(self, name, value):
        if name in ("timeout", "failed_campaigns") and self.owner and not self.owner._depth:
            self.owner.stray.append(f"election timer {name} = {value!r}")
        object.__setattr__(self, name, value)


class Watched(Node):
    """A Node that records every guarded write made outside a transition."""

    def __init__(self, *args, **kw):
        object.__setattr__(self, "_depth", 1)  # __init__ may set everything
        object.__setattr__(self, "stray", [])
        object.__setattr__(self, "transitions", [])
        super().__init__(*args, **kw)
        self._timer.__class__ = WatchedTimer
        self._timer.owner = self
        object.__setattr__(self, "_depth", 0)

    def __setattr__(self, name, value):
        if name in GUARDED and not self._depth:
            self.stray.append(f"{name} = {value!r}")
        object.__setattr__(self, name, value)


def _guard(name):
    def wrapper(self, *args, **kw):
        object.__setattr__(self, "_depth", self._depth + 1)
        self.transitions.append(name)
        try:
            getattr(Node, name)(self, *args, **kw)
        finally:
            object.__setattr__(self, "_depth", self._depth - 1)

    return wrapper


for _name in TRANSITIONS:
    setattr(Watched, _name, _guard(_name))


def check_role_invariants(c: Cluster) -> None:
    leaders_by_ballot: dict[Ballot, int] = {}
    for i, node in c.nodes.items():
        if i in c.down:
            continue
        assert not node.stray, (i, node.stray)
        if node.role is Role.LEADER:
            assert node.leader == node.id
            assert node.ballot.node == node.id
            assert node.ballot not in leaders_by_ballot, "two leaders of one ballot"
            leaders_by_ballot[node.ballot] = i
        else:
            assert node.leader != node.id
            assert not node.proposer.inflight, "only a leader has proposals in flight"
        if node.role is Role.CANDIDATE:
            assert node.leader is None
            assert node.ballot.node == node.id
            assert all(p.ballot == node.ballot for p in node.proposer.promises.values())
        if node.role is not Role.FOLLOWER:
            assert node.acceptor.promised >= node.ballot, "a campaign promises its own ballot"


def random_drive(c: Cluster, rng: random.Random, steps: int) -> Counter[str]:
    """Random ticks, deliveries (some lost or duplicated), proposals, crashes and restarts;
    returns how often each transition ran and how often a node stepped down."""
    made: Counter[str] = Counter()
    cut: set[int] = set()  # isolated: every message to or from them is lost
    for step in range(steps):
        roll = rng.random()
        live = [i for i in c.nodes if i not in c.down]
        if roll < 0.35:
            i = rng.choice(live)
            c.nodes[i].tick()
            c.ready(i)
        elif roll < 0.9 and c.network:
            msg = c.network.pop(rng.randrange(len(c.network)))
            lost = {msg.to, msg.frm} & (c.down | cut)
            if rng.random() < 0.15 or lost:
                continue  # lost
            if rng.random() < 0.1:
                c.network.append(msg)  # duplicated
            c.nodes[msg.to].step(msg)
            c.ready(msg.to)
        elif roll < 0.95:
            c.nodes[rng.choice(live)].propose(cmd(100 + step % 7, step))
            c.ready_all()
        elif cut:
            cut.clear()
        elif rng.random() < 0.5:
            cut.add(rng.choice(live))
        elif c.down:
            i = c.down.pop()
            made.update(c.nodes[i].transitions)
            made["step_downs"] += c.nodes[i].counters["step_downs"]
            c.restart(i)
        elif len(live) > len(c.nodes) // 2 + 1:
            c.down.add(rng.choice(live))
        check_role_invariants(c)
    for node in c.nodes.values():
        made.update(node.transitions)
        made["step_downs"] += node.counters["step_downs"]
    return made


@pytest.mark.parametrize("n", [3, 5])
def test_only_transitions_change_roles_and_every_role_keeps_its_invariants(monkeypatch, n):
    monkeypatch.setattr(helpers, "Node", Watched)
    made: Counter[str] = Counter()
    for seed in range(12):
        c = Cluster(n, seed, pre_vote=seed % 2 == 0)
        made += random_drive(c, random.Random(seed), 3000)
    # The drive must reach every transition, including a leader deposed by a higher ballot.
    assert all(made[t] for t in (*TRANSITIONS, "step_downs")), made


def test_the_watch_catches_a_write_outside_a_transition(monkeypatch):
    """So the test above can fail: a stray write is reported."""
    monkeypatch.setattr(helpers, "Node", Watched)
    c = Cluster(3)
    c.nodes[1].leader = 2
    with pytest.raises(AssertionError, match="leader = 2"):
        check_role_invariants(c)


def test_stepping_down_requeues_undecided_commands_in_slot_order_and_fails_reads():
    node = make_node(1)
    tick_until_campaign(node)
    drain(node)
    node.step(promise(2, 1, node.ballot))
    assert node.role is Role.LEADER
    node.propose(cmd(7, 1))
    drain(node)
    node.propose(cmd(7, 2))
    drain(node)
    node.read_index(5)
    higher = Ballot(node.ballot.round + 1, 3)
    node.step(accept(3, 1, higher, {}))
    assert node.role is Role.FOLLOWER and node.leader == 3 and node.ballot == higher
    assert list(node.proposer.pending) == [cmd(7, 1), cmd(7, 2)]
    assert not node.proposer.inflight
    r = drain(node)
    assert [(s.ctx, s.index) for s in r.reads] == [(5, None)]


def test_a_leader_yields_only_to_a_higher_ballot():
    node = make_node(2)
    tick_until_campaign(node)
    drain(node)
    node.step(promise(1, 2, node.ballot))
    assert node.role is Role.LEADER
    node.become_follower(1, Ballot(node.ballot.round - 1, 1))
    assert node.role is Role.LEADER
    node.become_follower(1, Ballot(node.ballot.round, 3))
    assert node.role is Role.FOLLOWER and node.leader == 1


def test_a_pre_vote_keeps_the_role_and_raises_nothing_durable():
    node = make_node(1, pre_vote=True)
    for _ in range(100):
        node.tick()
        if node.counters["pre_votes"]:
            break
    r = drain(node)
    assert node.role is Role.FOLLOWER
    assert r.hard_state is None and of_type(r, Prepare) == []
    assert {m.to for m in of_type(r, PreVote)} == {2, 3}


def test_failed_campaigns_back_off_and_a_leader_heard_ends_the_back_off():
    node = make_node(1)
    tick_until_campaign(node)
    node.become_follower(None, failed=True)
    node.become_follower(None, failed=True)
    assert node._timer.failed_campaigns == 2
    node.become_follower(2, Ballot(node.ballot.round + 1, 2))
    assert node._timer.failed_campaigns == 0
    assert of_type(drain(node), Accept) == []
