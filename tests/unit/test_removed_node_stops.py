"""When a removed node may stop (``Node.removed``, which ``paxctl node start`` obeys): only once
a voter that stays showed it knows every slot the old configuration governed is decided, and
made that durable first (``Ready.sync_chosen``). Knowing it alone is not enough: in a
configuration of two voters, the one that stays could never learn those slots without the
removed one's vote (``paxctl sim --reconfig`` seeds 212 and 292 stalled on that)."""

from __future__ import annotations

from helpers import Cluster, drain, make_node

from paxctl.core.membership import ALPHA, CONFIG_CLIENT, Remove, encode_change
from paxctl.core.messages import Accept
from paxctl.core.node import Node
from paxctl.core.state import DurableState, Ready
from paxctl.core.types import NOOP, Ballot, Command


def remove(node: int, seq: int = 1) -> Command:
    return Command(CONFIG_CLIENT, seq, encode_change(Remove(0, node)))


class Recording(Cluster):
    """A cluster that keeps every node's batches, with its commit index after each."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed)
        self.batches: dict[int, list[tuple[int, Ready]]] = {i: [] for i in self.nodes}

    def ready(self, i: int) -> Ready:
        r = super().ready(i)
        self.batches[i].append((self.nodes[i].learner.commit, r))
        return r


def restarted_after_its_removal(node_id: int = 3) -> Node:
    """Node ``node_id`` of three, restarted from a log that removes it at slot 1 and whose
    slots up to the one before that change governs are chosen: it knows it is removed, and
    nobody has told it that they know so too."""
    chosen = {1: (remove(node_id),), **{s: NOOP for s in range(2, 1 + ALPHA)}}
    node = make_node(node_id, state=DurableState(chosen=chosen))
    drain(node)
    assert node_id not in node.members.latest.ids and node.learner.commit + 1 >= 1 + ALPHA
    return node


def test_a_removed_node_stops_only_once_a_voter_that_stays_showed_it_knows():
    """A node may know alone that the old configuration's slots are decided (it led the
    phase 2 that chose them, and its last Accept was lost, say): if it stopped then, the two
    voters left of [1, 2, 3] could still carry on, but those left of two voters could not."""
    node = restarted_after_its_removal()
    assert not node.removed
    node.step(Accept(1, 3, Ballot(1, 1), (), ALPHA - 1, 0))  # a voter, not far enough yet
    assert not node.removed
    node.step(Accept(1, 3, Ballot(1, 1), (), ALPHA, 0))
    assert node.removed


def test_the_batch_that_passes_a_configurations_first_slot_is_synced():
    cl = Recording(3, seed=4)
    leader = cl.run_until_leader()
    cl.nodes[leader].propose(remove(3 if leader != 3 else 2))
    cl.tick(40)
    for i, batches in cl.batches.items():
        active = cl.nodes[i].members.latest.active
        assert active > 1, i
        synced = [commit for commit, r in batches if r.sync_chosen]
        # Once per node: in the batch whose commit index first reached the slot before it.
        assert len(synced) == 1 and synced[0] + 1 >= active, (i, synced, active)
        before = [commit for commit, r in batches if commit + 1 < active]
        assert before and synced[0] > max(before)
