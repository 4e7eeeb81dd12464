"""Whole clusters of cores driven in lockstep: one leader, one order, everything applied."""

from __future__ import annotations

import itertools
import random

import pytest
from helpers import Cluster, cmd

from paxctl.core.messages import Accept
from paxctl.core.node import Role
from paxctl.core.types import Ballot, Command


def assert_same_history(cl: Cluster, nodes: list[int] | None = None) -> list[Command]:
    nodes = nodes or list(cl.nodes)
    histories = [cl.applied_commands(i) for i in nodes]
    slots = [[a.slot for a in cl.applied[i]] for i in nodes]
    for h, s in zip(histories[1:], slots[1:], strict=True):
        assert h == histories[0]
        assert s == slots[0]
    assert slots[0] == list(range(1, len(slots[0]) + 1))
    # Every disk agrees with every other on every slot both know.
    for i in cl.disks:
        for j in cl.disks:
            for s in cl.disks[i].chosen.keys() & cl.disks[j].chosen.keys():
                assert cl.disks[i].chosen[s] == cl.disks[j].chosen[s]
    return histories[0]


def one_leader_per_ballot(cl: Cluster) -> None:
    senders: dict[Ballot, set[int]] = {}
    for m in cl.sent:
        if isinstance(m, Accept):
            senders.setdefault(m.ballot, set()).add(m.frm)
    assert all(len(s) == 1 for s in senders.values()), senders


@pytest.mark.parametrize("seed", range(4))
def test_three_nodes_elect_one_leader_and_apply_in_the_same_order(seed):
    cl = Cluster(3, seed=seed)
    leader = cl.run_until_leader(limit=50)
    for _ in range(3):  # the leadership is stable in a quiet cluster
        cl.tick()
        assert cl.leaders() == [leader]
    assert {nd.leader for nd in cl.nodes.values()} == {leader}
    sent: list[Command] = []
    for round_ in range(5):
        for i in cl.nodes:  # proposals at the leader and at followers (forwarded)
            c = cmd(10 * i + round_, 1)
            assert cl.nodes[i].propose(c)
            sent.append(c)
        cl.tick()
    cl.tick(4)
    history = assert_same_history(cl)
    assert sorted(history, key=lambda c: (c.client, c.seq)) == sorted(
        sent, key=lambda c: (c.client, c.seq)
    )
    assert len(history) == len(set(history))
    one_leader_per_ballot(cl)


def test_a_new_leader_keeps_what_the_old_one_decided():
    cl = Cluster(3, seed=7)
    first = cl.run_until_leader()
    for k in range(4):
        cl.nodes[first].propose(cmd(1, k))
    cl.tick(2)
    before = cl.applied_commands(first)
    assert before == [cmd(1, k) for k in range(4)]
    cl.down.add(first)
    second = cl.run_until_leader()
    assert second != first
    for k in range(4, 7):
        cl.nodes[second].propose(cmd(1, k))
    cl.tick(2)
    cl.down.discard(first)
    cl.restart(first)
    cl.tick(20)  # the old leader comes back, catches up and follows
    assert cl.leaders() == [second]
    history = assert_same_history(cl)
    assert history == [cmd(1, k) for k in range(7)]
    one_leader_per_ballot(cl)


def test_client_retry_through_another_node_takes_effect_once():
    cl = Cluster(3, seed=2)
    leader = cl.run_until_leader()
    follower = next(i for i in cl.nodes if i != leader)
    c = cmd(42, 1)
    cl.nodes[leader].propose(c)
    cl.nodes[follower].propose(c)  # the client timed out and retried elsewhere
    cl.tick(3)
    cl.nodes[follower].propose(c)  # and once more, after it was applied
    cl.tick(3)
    for i in cl.nodes:
        # The log may hold the retry again (the core keeps no exactly-once table); the
        # application, which keeps each client's last seq, applies it once.
        assert set(cl.applied_commands(i)) == {c}
        assert cl.effective_commands(i) == [c]
    assert_same_history(cl)


def test_minority_cannot_make_progress_and_majority_can():
    cl = Cluster(5, seed=3)
    leader = cl.run_until_leader()
    others = [i for i in cl.nodes if i != leader]
    cl.down.update(others[:3])  # the leader is left with one follower
    cl.nodes[leader].propose(cmd(5, 1))
    cl.tick(30)
    assert all(cmd(5, 1) not in cl.applied_commands(i) for i in cl.nodes)
    assert cl.nodes[leader].role is not Role.LEADER  # check-quorum deposed it
    cl.down.clear()
    cl.run_until_leader()
    cl.tick(10)
    for i in cl.nodes:
        assert cmd(5, 1) in cl.applied_commands(i)
    assert_same_history(cl)


@pytest.mark.parametrize("seed", range(6))
def test_lossy_reordering_network_keeps_histories_consistent_and_heals(seed):
    rng = random.Random(seed)
    cl = Cluster(3, seed=seed)
    # Clients as the dedup table assumes: one command outstanding each, retried until applied.
    outstanding: dict[int, Command | None] = {101: None, 102: None, 103: None}
    issued: dict[int, int] = dict.fromkeys(outstanding, 0)

    def clients_act(p_new: float) -> None:
        for client, c in outstanding.items():
            if c is not None and all(cl.is_applied(i, c) for i in cl.nodes):
                outstanding[client] = c = None
            if c is None and rng.random() < p_new:
                c = outstanding[client] = cmd(client, issued[client])
                issued[client] += 1
            if c is not None and rng.random() < 0.3:
                cl.nodes[rng.choice(list(cl.nodes))].propose(c)  # first try, or a retry

    for _ in range(150):
        for node in cl.nodes.values():
            node.tick()
        clients_act(0.5)
        cl.ready_all()
        batch, cl.network = cl.network, []
        rng.shuffle(batch)
        for m in batch:
            if rng.random() < 0.25:
                continue  # dropped
            for _ in range(2 if rng.random() < 0.1 else 1):  # sometimes duplicated
                cl.nodes[m.to].step(m)
        cl.ready_all()
        # Applied histories are prefixes of one another at every moment.
        hs = sorted((cl.applied_commands(i) for i in cl.nodes), key=len)
        for shorter, longer in itertools.pairwise(hs):
            assert longer[: len(shorter)] == shorter
    cl.network = []
    for _ in range(40):  # heal: a clean network; clients finish what they started
        clients_act(0.0)
        cl.tick()
    assert all(c is None for c in outstanding.values()), outstanding
    assert_same_history(cl)
    history = cl.effective_commands(next(iter(cl.nodes)))
    for client, n in issued.items():  # every command applied exactly once, in client order
        assert [c.seq for c in history if c.client == client] == list(range(n))
    assert sum(issued.values()) > 20
    one_leader_per_ballot(cl)
