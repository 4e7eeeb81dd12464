"""Any message the codec can produce, in any order, leaves a node standing."""

from __future__ import annotations

from helpers import justification_errors, make_node
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.core.learner import SafetyViolation
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    Nack,
    Prepare,
    Promise,
)
from paxctl.core.state import DurableState
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command

small = st.integers(0, 5)
senders = st.integers(0, 4)  # 0 and 4 are not voters of the three-node cluster
ballots = st.builds(Ballot, small, st.integers(0, 4))
values = st.lists(st.builds(Command, st.integers(0, 2), small, st.just(b"")), max_size=2).map(tuple)
chosen = st.lists(st.builds(ChosenEntry, small, values), max_size=3).map(tuple)
votes = st.lists(st.builds(AcceptedEntry, small, ballots, values), max_size=3).map(tuple)
to = st.just(1)
messages = st.one_of(
    st.builds(Prepare, senders, to, ballots, small),
    st.builds(Promise, senders, to, ballots, small, votes, small),
    st.builds(Nack, senders, to, ballots, ballots),
    st.builds(Accept, senders, to, ballots, chosen, small),
    st.builds(Accepted, senders, to, ballots, st.lists(small, max_size=3).map(tuple), small),
    st.builds(Forward, senders, to, values),
    st.builds(CatchupRequest, senders, to, small),  # from_slot 0 included
    st.builds(CatchupReply, senders, to, chosen, small),
)
actions = st.lists(
    st.one_of(
        messages, st.just("tick"), st.builds(Command, st.integers(0, 2), small, st.just(b""))
    ),
    max_size=40,
)


@given(actions, st.integers(0, 1000))
@settings(max_examples=150, deadline=None)
def test_well_typed_messages_never_crash_a_node(script, seed):
    node = make_node(1, seed=seed, election_ticks=3, heartbeat_ticks=1)
    disk = DurableState()
    for action in script:
        try:
            if action == "tick":
                node.tick()
            elif isinstance(action, Command):
                node.propose(action)
            else:
                node.step(action)
        except SafetyViolation:
            return  # fabricated messages may claim two values chosen for a slot: refused loudly
        r = node.ready()
        assert not justification_errors(disk, r)
        disk.persist(r)
        node.advance()
