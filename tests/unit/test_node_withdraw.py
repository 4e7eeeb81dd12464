"""Taking back a command that never left its node (``Node.withdraw``), and forgetting a silent
leader: together they let a node with no leader tell its client "not done" (Unavailable) instead
of "outcome unknown", and only when that is true.
"""

from __future__ import annotations

import dataclasses

from helpers import Cluster, cmd

from paxctl.core.messages import Forward
from paxctl.core.node import Role

WRITE = cmd(9000, 1, b"w")


def _leaderless() -> Cluster:
    """Node 1 led and is gone; 2 and 3 are cut off from each other too, so nobody leads (with
    pre-votes, as in production: a failed pre-vote is no campaign, so only the silence itself
    can make a node forget its leader)."""
    cl = Cluster(3, seed=4)
    cl.elect(1)
    for node in cl.nodes.values():
        node.config = dataclasses.replace(node.config, pre_vote=True)
    cl.down = {1}
    for _ in range(60):  # past an election timeout: 2 and 3 forget 1 (and campaign in vain)
        for i in (2, 3):
            cl.nodes[i].tick()
        cl.network = []  # every message lost
        cl.ready_all()
    assert all(cl.nodes[i].leader is None for i in (2, 3))
    return cl


def test_a_silent_leader_is_forgotten_after_an_election_timeout() -> None:
    cl = _leaderless()
    node = cl.nodes[2]
    node.propose(WRITE)
    cl.ready(2)
    assert not [m for m in cl.network if isinstance(m, Forward)]  # kept here: no leader to take it
    assert node.proposer.pending and node.role is not Role.LEADER


def test_a_command_that_never_left_is_withdrawn_and_never_decided() -> None:
    cl = _leaderless()
    cl.nodes[2].propose(WRITE)
    cl.ready_all()
    assert cl.nodes[2].withdraw(WRITE.client, WRITE.seq)
    assert not cl.nodes[2].withdraw(WRITE.client, WRITE.seq)  # once
    cl.down = set()  # 1 is back; the cluster elects and serves
    cl.run_until_leader()
    cl.settle()
    assert not any(cl.is_applied(i, WRITE) for i in cl.nodes)


def test_a_forwarded_command_is_not_withdrawn() -> None:
    cl = Cluster(3, seed=4)
    cl.elect(1)
    cl.nodes[2].propose(WRITE)
    cl.ready(2)  # forwarded to the leader
    assert any(isinstance(m, Forward) for m in cl.network)
    assert not cl.nodes[2].withdraw(WRITE.client, WRITE.seq)
    cl.settle()
    assert cl.is_applied(2, WRITE)


def test_commands_handed_over_by_others_are_not_withdrawn() -> None:
    """A command another node forwarded here went out from somewhere: its client's node may
    not call it undone; nor may this one, for a client it never served."""
    cl = _leaderless()
    node = cl.nodes[2]
    node.step(Forward(3, 2, (WRITE,)))
    assert node.proposer.pending
    assert not node.withdraw(WRITE.client, WRITE.seq)
    node.propose(WRITE)  # the same command from a client here adds nothing, and stays out
    assert not node.withdraw(WRITE.client, WRITE.seq)


def test_commands_a_leader_kept_from_its_proposals_are_not_withdrawn() -> None:
    """A leader that steps down keeps its undecided proposals for the next leader: they were
    sent to acceptors, so some may be chosen."""
    cl = Cluster(3, seed=4)
    cl.elect(1)
    leader = cl.nodes[1]
    cl.down = {2, 3}
    leader.propose(WRITE)
    cl.ready(1)  # proposed in a slot: Accepts out
    assert leader.proposer.inflight
    for _ in range(60):  # check-quorum: it steps down
        leader.tick()
        cl.network = []
        cl.ready(1)
    assert leader.role is not Role.LEADER and leader.proposer.pending
    assert not leader.withdraw(WRITE.client, WRITE.seq)


def test_a_command_proposed_again_after_it_left_is_never_withdrawn() -> None:
    """A follower forwarded a write to its leader, which vanished; the node's engine proposes
    it again for the next leader (``propose_again``). The copy that left may still be decided,
    so the one waiting here now can never be taken back as "not done"."""
    cl = Cluster(3, seed=4)
    cl.elect(1)
    cl.nodes[2].propose(WRITE)
    cl.ready(2)
    assert [m for m in cl.network if isinstance(m, Forward) and m.to == 1]  # it left
    cl.network = []  # lost with the leader
    cl.down = {1}
    for _ in range(60):
        cl.nodes[2].tick()
        cl.network = []
        cl.ready(2)
    assert cl.nodes[2].leader is None
    assert cl.nodes[2].propose_again(WRITE)
    cl.ready(2)
    assert cl.nodes[2].proposer.pending  # waits here for a leader...
    assert not cl.nodes[2].withdraw(WRITE.client, WRITE.seq)  # ...and is never called undone
    fresh = cmd(9000, 2, b"v")
    cl.nodes[2].propose(fresh)
    assert cl.nodes[2].propose_again(fresh)  # still waiting, never left: a no-op
    assert cl.nodes[2].withdraw(fresh.client, fresh.seq)
