"""Peer messages checked against the receiver's state (core/validate.py, issue 14).

Each test sends one well-typed message a node must not act upon and checks that nothing of the
node's state moved, that nothing went out, and that the rejection was counted and kept for the
shell to log; where it matters, the same message with the checks off (the planted bug
``no_peer_checks``) shows what it would have done.
"""

from __future__ import annotations

import pytest
from helpers import accept, cmd, drain, make_node, of_type, prepare, promise, val

from paxctl.core import codec
from paxctl.core.bugs import PlantedBugs
from paxctl.core.messages import (
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    Message,
    Nack,
    PreVoteReply,
    Promise,
    ReadIndex,
    ReadIndexReply,
)
from paxctl.core.node import Node, Role
from paxctl.core.state import Config
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry
from paxctl.core.validate import MAX_ROUND, MAX_ROUND_JUMP

TOP = codec.MAX_UINT
NO_CHECKS = PlantedBugs(no_peer_checks=True)


def leader(n: int = 3) -> Node:
    node = make_node(1, n=n)
    node.become_candidate(pre_voted=True)
    drain(node)
    node.step(promise(2, 1, node.ballot, 1))
    assert node.role is Role.LEADER
    drain(node)
    return node


def rejected(node: Node, msg: Message, code: str) -> None:
    """``msg`` is dropped with ``code``: counted, kept for the log, nothing sent or persisted."""
    before = node.counters["rejected"]
    state = (node.acceptor.promised, node.max_round, node.learner.commit, node.role, node.ballot)
    node.step(msg)
    assert node.counters["rejected"] == before + 1
    assert node.counters[f"rejected_{type(msg).__name__}"] >= 1
    (got, why), *_ = node.take_rejections()
    assert got == msg and why.code == code, why
    after = (node.acceptor.promised, node.max_round, node.learner.commit, node.role, node.ballot)
    assert after == state
    r = drain(node)
    assert not r.messages and r.hard_state is None and not r.chosen and not r.votes


@pytest.mark.parametrize("round_", [TOP, MAX_ROUND + 1, MAX_ROUND_JUMP + 1])
def test_a_prepare_with_an_absurd_round_is_dropped(round_):
    node = make_node(2)
    rejected(
        node, prepare(3, 2, Ballot(round_, 3)), "round-cap" if round_ > MAX_ROUND else "round-jump"
    )
    # The node can still campaign, and its ballot still encodes.
    node.tick()
    while node.role is not Role.CANDIDATE:
        node.tick()
    for m in drain(node).messages:
        assert codec.decode(codec.encode(m)) == m


def test_the_issues_prepare_without_the_checks_wedges_every_later_campaign():
    node = make_node(2, planted_bugs=NO_CHECKS)
    node.step(prepare(3, 2, Ballot(TOP, 3)))
    assert node.acceptor.promised.round == TOP
    drain(node)
    node.become_candidate(pre_voted=True)  # no round above 2**63 - 1 can be sent
    assert not drain(node).messages and node.counters["round_cap"] == 1


def test_a_round_within_the_jump_is_taken_and_the_node_can_still_go_above_it():
    node = make_node(2)
    node.step(prepare(3, 2, Ballot(MAX_ROUND_JUMP, 3)))
    assert node.acceptor.promised == Ballot(MAX_ROUND_JUMP, 3)
    node.become_candidate(pre_voted=True)
    assert node.ballot.round == MAX_ROUND_JUMP + 1


def test_ballots_are_issued_only_by_their_own_node():
    node = make_node(2)
    rejected(node, prepare(3, 2, Ballot(5, 1)), "ballot-node")
    rejected(node, accept(3, 2, Ballot(5, 1), {1: val(cmd(9, 1))}, commit=1), "ballot-node")
    rejected(node, prepare(3, 2, Ballot(5, 7)), "ballot-node")


def test_messages_from_strangers_or_from_itself_or_misaddressed_are_dropped():
    node = make_node(2)
    rejected(node, prepare(7, 2, Ballot(5, 7)), "not-member")
    rejected(node, prepare(2, 2, Ballot(5, 2)), "self")
    rejected(node, prepare(3, 1, Ballot(5, 3)), "misaddressed")
    rejected(node, Forward(7, 2, (cmd(9, 1),)), "not-member")


def test_answers_must_name_a_ballot_this_node_issued():
    node = make_node(1)
    node.become_candidate(pre_voted=True)
    drain(node)
    b = node.ballot
    never = Ballot(b.round + 1, 1)
    rejected(node, Promise(2, 1, never, 1, (), 0), "not-ours")
    rejected(node, Promise(2, 1, Ballot(b.round, 3), 1, (), 0), "not-ours")
    rejected(node, Nack(2, 1, never, Ballot(never.round + 1, 2)), "not-ours")
    rejected(node, Nack(2, 1, b, Ballot(TOP, 2)), "round-cap")
    rejected(node, Nack(2, 1, b, Ballot(b.round - 1, 2)), "bad-ballot")
    rejected(node, Accepted(2, 1, never, (1,), 0), "not-ours")


def test_a_promise_reporting_votes_outside_what_was_asked_is_dropped():
    node = make_node(1)
    node.become_candidate(pre_voted=True)
    drain(node)
    b = node.ballot
    rejected(node, Promise(2, 1, b, 2, (), 0), "bad-slot")
    rejected(node, Promise(2, 1, b, 1, (), 0, compacted=5), "bad-slot")
    high = AcceptedEntry(1, Ballot(b.round + 1, 2), val(cmd(9, 1)))
    rejected(node, Promise(2, 1, b, 1, (high,), 1), "bad-ballot")


def test_a_candidate_far_behind_a_promise_steps_down_to_catch_up_instead_of_filling_slots():
    node = make_node(1)
    node.become_candidate(pre_voted=True)
    drain(node)
    node.step(Promise(2, 1, node.ballot, 1, (), 10**9))
    assert node.role is Role.FOLLOWER
    assert of_type(drain(node), CatchupRequest) == [CatchupRequest(1, 2, 1)]
    for n in (2, 3):  # the same with a vote far ahead, even one it is not told is chosen
        node = make_node(1)
        node.become_candidate(pre_voted=True)
        drain(node)
        far = AcceptedEntry(10**9, Ballot(0, 2), val(cmd(9, 1)))
        node.step(Promise(n, 1, node.ballot, 1, (far,), 0))
        node.step(Promise(5 - n, 1, node.ballot, 1, (), 0))
        assert node.role is Role.FOLLOWER and not node.proposer.inflight


def test_an_unsolicited_catchup_reply_applies_nothing():
    node = make_node(2)
    rejected(node, CatchupReply(3, 2, (ChosenEntry(1, val(cmd(9, 1))),), 1), "unsolicited")
    # Without the checks it would have been applied.
    bad = make_node(2, planted_bugs=NO_CHECKS)
    bad.step(CatchupReply(3, 2, (ChosenEntry(1, val(cmd(9, 1))),), 1))
    assert bad.learner.commit == 1


def test_a_catchup_reply_is_taken_only_from_the_peer_asked_and_for_the_slots_asked():
    node = make_node(2)
    node.step(accept(1, 2, Ballot(1, 1), commit=3))
    assert of_type(drain(node), CatchupRequest) == [CatchupRequest(2, 1, 1)]
    entry = ChosenEntry(1, val(cmd(9, 1)))
    rejected(node, CatchupReply(3, 2, (entry,), 3), "unsolicited")
    far = ChosenEntry(10**9, val(cmd(9, 1)))
    rejected(node, CatchupReply(1, 2, (entry, far), 10**9), "out-of-range")
    assert not node.learner.chosen  # nothing of it, not even the in-range entry
    node.step(CatchupReply(1, 2, (entry,), 3))
    assert node.learner.commit == 1
    assert of_type(drain(node), CatchupRequest) == [CatchupRequest(2, 1, 2)]
    rejected(node, CatchupReply(1, 2, (entry,), 3), "out-of-range")  # a duplicate (2 is asked now)


def test_a_peer_asked_long_ago_may_still_answer_for_the_slots_after_the_commit():
    """A peer that never answered an old request, then leads: its replies for the slots after
    this node's commit are taken, however far the node learned elsewhere meanwhile (review of
    issue 14: the range used to end past the first slot ever asked of it)."""
    node = make_node(2)
    node.step(accept(1, 2, Ballot(1, 1), commit=3))
    assert of_type(drain(node), CatchupRequest) == [CatchupRequest(2, 1, 1)]
    far = 1 + node.config.max_entries + node.config.accept_window + 10
    for slot in range(1, far):  # learned from others while node 1 stayed silent
        node.learner.learn(slot, val(cmd(9, slot)))
    assert node.catchup.asked[1] == 1 and node.learner.commit == far - 1
    node.step(CatchupReply(1, 2, (ChosenEntry(far, val(cmd(9, far))),), far))
    assert node.learner.commit == far


def test_accepts_beyond_the_window_get_no_vote_but_the_leader_is_followed():
    node = make_node(2)
    window = node.config.accept_window
    entries = {1: val(cmd(9, 1)), window + 2: val(cmd(9, 2)), 10**9: val(cmd(9, 3))}
    node.step(accept(1, 2, Ballot(1, 1), entries))
    r = drain(node)
    assert [v.slot for v in r.votes] == [1]
    assert of_type(r, Accepted)[0].slots == (1,)
    assert node.leader == 1 and node.counters["accepts_beyond_window"] == 2


def test_a_read_point_is_taken_only_for_a_read_asked_and_from_the_node_asked():
    node = make_node(2)
    node.step(accept(1, 2, Ballot(1, 1)))
    drain(node)
    node.read_index(7)
    assert of_type(drain(node), ReadIndex) == [ReadIndex(2, 1, 7)]
    rejected(node, ReadIndexReply(1, 2, 8, 0, 1), "unsolicited")
    rejected(node, ReadIndexReply(3, 2, 7, 0, 1), "wrong-peer")
    rejected(node, ReadIndexReply(1, 2, 7, 0, 5), "bad-flag")
    node.step(ReadIndexReply(1, 2, 7, 0, 1))
    assert drain(node).reads[0].ctx == 7
    rejected(node, ReadIndexReply(1, 2, 7, 0, 1), "unsolicited")  # answered already


def test_a_leader_refuses_acknowledgements_of_heartbeats_it_never_sent():
    node = leader(n=3)
    node.read_index(1)
    drain(node)
    future = node.heartbeat_round + 5
    rejected(node, Accepted(2, 1, node.ballot, (), 0, future), "future-round")
    assert not drain(node).reads  # the read still waits for a real quorum


def test_pre_vote_replies_must_say_yes_or_no():
    node = make_node(1, pre_vote=True)
    rejected(node, PreVoteReply(2, 1, 1, 7), "bad-flag")


def test_accept_window_is_at_least_the_window():
    with pytest.raises(ValueError):
        Config(1, (1, 2, 3), window=32, accept_window=16)
