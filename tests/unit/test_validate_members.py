"""Peer messages against the membership (core/validate.py): what a removed node, an id the
cluster never gave out, or a member that is not the leader can make a node do. Forged messages
are well-formed and authenticated as their sender would be; the node must check them against its
own state and drop what does not fit, doing nothing else.
"""

from __future__ import annotations

from helpers import Cluster, accept, cmd, drain, prepare, val
from test_core_membership import propose_change, run

from paxctl.core.membership import Remove
from paxctl.core.messages import (
    CatchupReply,
    CatchupRequest,
    Handover,
    Message,
    SnapshotOffer,
)
from paxctl.core.node import Node, Role
from paxctl.core.types import Ballot, ChosenEntry


def dropped(node: Node, msg: Message, code: str) -> None:
    """``msg`` is rejected with ``code`` and moves nothing: no role, ballot, promise, commit
    change, nothing sent or persisted."""
    drain(node)
    node.take_rejections()  # (what the test's own set-up had dropped)
    state = (node.role, node.leader, node.ballot, node.acceptor.promised, node.learner.commit)
    node.step(msg)
    (got, why), *_ = node.take_rejections()
    assert got == msg and why.code == code, why
    assert (node.role, node.leader, node.ballot, node.acceptor.promised,
            node.learner.commit) == state  # fmt: skip
    r = drain(node)
    assert not r.messages and r.hard_state is None and not r.votes


def _after_removing(gone: int) -> tuple[Cluster, int]:
    """Voters {1, 2, 3}, then ``gone`` removed (and every slot of its configuration decided)."""
    cl = Cluster(3, seed=5)
    cl.elect(1)
    propose_change(cl, 1, Remove(0, gone), 1)
    run(cl, 30)
    assert cl.nodes[gone].removed and cl.nodes[1].members.latest.voters == {1, 2, 3} - {gone}
    cl.down = {gone}
    return cl, cl.nodes[1].members.latest.next_id


def ignored(node: Node, msg: Message) -> None:
    """``msg`` moves nothing and gets no answer: rejected at the gate (``not-member``, once
    the node keeps no configuration naming the sender) or, while it still keeps the last one
    that did (until its next commit), ignored by R-cfg6 (no ballot of a non-member of the
    slots' configurations)."""
    drain(node)
    node.take_rejections()
    state = (node.role, node.leader, node.ballot, node.acceptor.promised, node.learner.commit)
    before = node.counters["prepare_from_non_voter"] + node.counters["rejected"]
    node.step(msg)
    assert (node.role, node.leader, node.ballot, node.acceptor.promised,
            node.learner.commit) == state  # fmt: skip
    r = drain(node)
    assert not r.messages and r.hard_state is None and not r.votes
    assert node.counters["prepare_from_non_voter"] + node.counters["rejected"] > before or (
        not r.chosen
    )


def test_a_removed_node_can_no_longer_campaign_or_propose() -> None:
    cl, _ = _after_removing(3)
    follower = cl.nodes[2]
    high = Ballot(follower.known_round() + 1, 3)
    ignored(follower, prepare(3, 2, high))
    ignored(follower, accept(3, 2, high, {17: val(cmd(9, 1))}))
    assert 17 not in follower.acceptor.votes_from(17)
    # After the next commit it keeps no configuration naming 3: dropped at the gate.
    cl.nodes[1].propose(cmd(9, 2))
    run(cl, 3)
    dropped(follower, prepare(3, 2, Ballot(follower.known_round() + 1, 3)), "not-member")


def test_a_removed_node_may_still_ask_for_the_log_but_a_never_given_id_may_not() -> None:
    cl, next_id = _after_removing(3)
    leader = cl.nodes[1]
    drain(leader)
    leader.take_rejections()
    leader.step(CatchupRequest(3, 1, 1))  # a former member: served, as it may not know yet
    assert not leader.take_rejections()
    served = [m for m in drain(leader).messages if isinstance(m, CatchupReply | SnapshotOffer)]
    assert [m.to for m in served] == [3]
    dropped(leader, CatchupRequest(next_id + 5, 1, 1), "not-member")


def test_an_unasked_catch_up_answer_from_a_possible_newer_member_is_dropped() -> None:
    """Ids from ``next_id`` on may be members added after what a node knows, so their answers
    pass the membership check; only answers to this node's own requests are taken."""
    cl, next_id = _after_removing(3)
    forged = CatchupReply(next_id, 2, (ChosenEntry(1, val(cmd(9, 1))),), 10**6)
    dropped(cl.nodes[2], forged, "unsolicited")


def test_a_handover_only_from_the_leader_and_only_to_a_voter() -> None:
    cl = Cluster(3, seed=5)
    cl.elect(1)
    follower = cl.nodes[2]
    assert follower.leader == 1
    dropped(follower, Handover(3, 2, 3), "not-leader")  # a member that does not lead
    dropped(follower, Handover(1, 2, 7), "not-voter")  # the leader, naming a stranger
    for _ in range(3):  # and it did not start a campaign on either's word
        follower.tick()
    assert follower.role is Role.FOLLOWER and follower.leader == 1
    follower.step(Handover(1, 2, 2))  # the real thing: it campaigns at once
    assert follower.role is not Role.FOLLOWER or follower.leader is None
