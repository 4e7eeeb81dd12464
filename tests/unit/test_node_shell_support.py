"""What the core offers the shell for sessions: leader readiness, forgetting a client, relays."""

from __future__ import annotations

from helpers import Cluster, cmd

from paxctl.core.messages import Accept, Relay
from paxctl.core.node import Role


def test_a_new_leader_is_ready_only_after_applying_what_it_adopted():
    cl = Cluster(3)
    cl.elect(1)
    for seq in range(1, 4):
        cl.nodes[1].propose(cmd(7, seq))
    # Node 2 votes for the proposals but never learns that they were chosen.
    cl.ready(1)
    cl.network = [m for m in cl.network if isinstance(m, Accept) and m.to == 2]
    cl.deliver()
    cl.network = []
    assert cl.nodes[2].learner.applied == 0
    cl.down = {1}
    # Tick nodes 2 and 3 and deliver one message at a time; look at whichever becomes leader
    # the moment it does (node 3 too would adopt node 2's votes in its phase 1).
    seen_leader_unready = False
    for _ in range(200):
        for i in (2, 3):
            cl.nodes[i].tick()
            cl.ready(i)
        while cl.network:
            m = cl.network.pop(0)
            if m.to in cl.down or m.frm in cl.down:
                continue
            cl.nodes[m.to].step(m)
            cl.ready(m.to)
            for i in (2, 3):
                n = cl.nodes[i]
                if n.role is Role.LEADER and len(cl.applied_commands(i)) < 3:
                    assert not n.leader_ready
                    seen_leader_unready = True
        if any(cl.nodes[i].leader_ready for i in (2, 3)):
            break
    assert seen_leader_unready
    leader = next(i for i in (2, 3) if cl.nodes[i].leader_ready)
    assert [c.seq for c in cl.applied_commands(leader)] == [1, 2, 3]


def test_followers_are_never_ready():
    cl = Cluster(3)
    cl.elect(1)
    cl.settle()
    assert cl.nodes[1].leader_ready
    assert not cl.nodes[2].leader_ready and not cl.nodes[3].leader_ready


def test_the_core_ignores_relays():
    cl = Cluster(3)
    cl.elect(1)
    before = cl.nodes[2].status()
    cl.nodes[2].step(Relay(1, 2, 1, b"anything"))
    r = cl.ready(2)
    assert not r.messages and cl.nodes[2].status() == before
