"""SessionKeeper: relayed heartbeats, confirmation by a quorum round, expiry through the log."""

from __future__ import annotations

import weakref

from helpers import Cluster

from paxctl.core.messages import Relay
from paxctl.core.types import Command
from paxctl.server.liveness import (
    CONFIRM_BIT,
    TOUCH,
    TOUCH_ACK,
    RelayError,
    SessionKeeper,
    decode_touch,
    encode_touch,
)
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import (
    REAPER_CLIENT,
    TEMP_CLIENT_BIT,
    OpenSession,
    decode_command,
    encode_command,
)

S = 1 << 20  # a session id (the zxid of slot 16, index 0, where it was opened)


def machine_with(sessions: dict[int, int]) -> StateMachine:
    """A machine where each session was opened at the zxid that is its id."""
    m = StateMachine()
    for k, (s, timeout) in enumerate(sorted(sessions.items())):
        m.apply_command(s, encode_command(0, OpenSession(timeout)), TEMP_CLIENT_BIT | k, 1)
        assert m.last_opened == s
    return m


def ready_cluster() -> Cluster:
    cl = Cluster(3)
    cl.elect(1)
    cl.settle()
    assert cl.nodes[1].leader_ready
    return cl


def apply_committed(cl: Cluster, i: int, machine: StateMachine) -> None:
    """Apply what node i committed since the last call to ``machine``, as its replica would
    (the keeper's fence counts as applied once the machine's exactly-once table has it)."""
    done = _applied_upto.get(machine, 0)
    for applied in cl.applied[i][done:]:
        for index, cmd in enumerate(applied.commands):
            machine.apply_command(zxid_of(applied.slot, index), cmd.data, cmd.client, cmd.seq)
    _applied_upto[machine] = len(cl.applied[i])


_applied_upto: weakref.WeakKeyDictionary[StateMachine, int] = weakref.WeakKeyDictionary()


def confirm_all(cl: Cluster, i: int, keeper: SessionKeeper, machine: StateMachine) -> list:
    """Let node i's read-index rounds finish; feed the results to its keeper."""
    out = []
    for _ in range(5):
        cl.settle()
        apply_committed(cl, i, machine)
        for read in cl.reads[i]:
            if keeper.is_confirmation(read.ctx):
                out.append(keeper.confirmed(read.ctx, read.index is not None, machine))
        cl.reads[i] = []
    return out


def test_touch_codec_round_trip_and_strictness():
    assert decode_touch(encode_touch(7, [S, S + 1])) == (7, (S, S + 1))
    for bad in (b"", b"\xc1", encode_touch(-1, []), b"\x92\x01\x05", b"\x93\x01\x90\x90"):
        try:
            decode_touch(bad)
        except RelayError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_a_follower_relays_and_answers_only_after_the_leaders_confirmed_ack():
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    leader = SessionKeeper(1, (1, 2, 3))
    follower = SessionKeeper(2, (1, 2, 3), incarnation=5)
    follower.ping(S, "token")
    duties = follower.tick(cl.nodes[2], machine, now_ms=0, wall_ms=0)
    assert not duties.answers
    touches = [m for m in duties.messages if isinstance(m, Relay)]
    assert {m.to for m in touches} == {1, 3} and all(m.kind == TOUCH for m in touches)
    # Node 3 is no leader: it ignores the touch. The leader records it and starts a round.
    assert not follower.on_relay(touches[0], cl.nodes[3], machine, 0).messages
    to_leader = next(m for m in touches if m.to == 1)
    assert not leader.on_relay(to_leader, cl.nodes[1], machine, now_ms=10).messages
    assert leader.tracker.last_seen(S) is None or leader.tracker.last_seen(S) <= 10
    results = confirm_all(cl, 1, leader, machine)
    acks = [m for d in results for m in d.messages]
    assert len(acks) == 1 and acks[0].kind == TOUCH_ACK and acks[0].to == 2
    answered = follower.on_relay(acks[0], cl.nodes[2], machine, 20).answers
    assert answered == [("token", True)]


def test_an_unconfirmed_round_answers_nothing():
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    leader = SessionKeeper(1, (1, 2, 3))
    leader.tick(cl.nodes[1], machine, 0, 0)  # becomes active
    leader.on_relay(Relay(2, 1, TOUCH, encode_touch(1, [S])), cl.nodes[1], machine, 5)
    ctx = next(iter(leader._confirming))
    assert ctx & CONFIRM_BIT
    assert not leader.confirmed(ctx, False, machine).messages  # lost its leadership meanwhile


def test_pings_of_an_expired_session_are_answered_not_alive():
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    leader = SessionKeeper(1, (1, 2, 3))
    leader.ping(S + 1, "gone")  # not in the table
    leader.ping(S, "here")
    leader.tick(cl.nodes[1], machine, 0, 0)
    answers = [a for d in confirm_all(cl, 1, leader, machine) for a in d.answers]
    assert sorted(answers) == [("gone", False), ("here", True)]


def test_stale_acks_from_another_incarnation_are_ignored():
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    follower = SessionKeeper(2, (1, 2, 3), incarnation=9)
    follower.ping(S, "t")
    follower.tick(cl.nodes[2], machine, 0, 0)
    # An ack for round 1 without this run's offset: meant for a previous run of node 2.
    stale = Relay(1, 2, TOUCH_ACK, encode_touch(1, []))
    assert follower.on_relay(stale, cl.nodes[2], machine, 1).answers == []


def test_the_leader_expires_a_silent_session_through_a_reaper_command():
    cl = ready_cluster()
    machine = machine_with({S: 1000, S + 1: 1000})
    leader = SessionKeeper(1, (1, 2, 3))
    assert not leader.tick(cl.nodes[1], machine, now_ms=0, wall_ms=0).proposals
    for now in range(100, 1100, 100):  # S + 1 heartbeats, S is silent
        leader.touch(S + 1)
        leader.tick(cl.nodes[1], machine, now, now)
        confirm_all(cl, 1, leader, machine)
    proposals = leader.tick(cl.nodes[1], machine, now_ms=1101, wall_ms=5000).proposals
    closes = [p for p in proposals if p.client == REAPER_CLIENT]
    assert len(closes) == 1
    time_ms, op = decode_command(closes[0].data)
    assert op.session == S and time_ms == 5000
    # Not proposed again at once (retry_ms), and never for the live one.
    again = leader.tick(cl.nodes[1], machine, now_ms=1102, wall_ms=5001).proposals
    assert not [p for p in again if p.client == REAPER_CLIENT and b"close" in p.data]


def test_followers_never_expire_and_a_new_leader_grants_a_fresh_timeout():
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    follower = SessionKeeper(2, (1, 2, 3))
    for now in (0, 5000, 10_000):
        assert not follower.tick(cl.nodes[2], machine, now, now).proposals
    # Leadership moves to node 2 at t=10_000: the silent session gets a full timeout from then.
    cl.down = {1}
    cl.run_until_leader()
    assert cl.nodes[2].leader_ready or cl.nodes[3].leader_ready
    new = 2 if cl.nodes[2].leader_ready else 3
    keeper = SessionKeeper(new, (1, 2, 3))
    assert not keeper.tick(cl.nodes[new], machine, 10_000, 10_000).proposals
    assert not keeper.tick(cl.nodes[new], machine, 10_999, 10_999).proposals
    assert keeper.tick(cl.nodes[new], machine, 11_001, 11_001).proposals


def test_reaper_sequence_numbers_grow_across_leaders():
    cl = ready_cluster()
    machine = machine_with({S: 10, S + 1: 10})
    k1 = SessionKeeper(1, (1, 2, 3))
    k1.tick(cl.nodes[1], machine, 0, 0)
    first = k1.tick(cl.nodes[1], machine, 100, 100).proposals
    seqs = [p.seq for p in first]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == 2
    for p in first:
        cl.nodes[1].propose(p)
    cl.settle()
    cl.down = {1}
    cl.run_until_leader()
    new = 2 if cl.nodes[2].leader_ready else 3
    k2 = SessionKeeper(new, (1, 2, 3))
    machine2 = machine_with({S + 2: 10})
    k2.tick(cl.nodes[new], machine2, 0, 0)
    later = k2.tick(cl.nodes[new], machine2, 100, 100).proposals
    assert later and min(p.seq for p in later) > max(seqs)
    assert all(isinstance(p, Command) for p in later)


def test_a_session_being_expired_is_never_answered_alive_in_that_term():
    """Review finding: the leader proposed an expiry, the client pinged, and the confirmation
    came back before the expiry was applied; the ping must not be answered "alive"."""
    cl = ready_cluster()
    machine = machine_with({S: 1000})
    leader = SessionKeeper(1, (1, 2, 3))
    leader.tick(cl.nodes[1], machine, 0, 0)
    confirm_all(cl, 1, leader, machine)  # the fence
    proposals = leader.tick(cl.nodes[1], machine, 1500, 1500).proposals
    assert any(p.client == REAPER_CLIENT and b"close" in p.data for p in proposals)
    # The expiry is not applied (machine still has S); the client pings meanwhile.
    leader.ping(S, "late ping")
    leader.tick(cl.nodes[1], machine, 1510, 1510)
    answers = [a for d in confirm_all(cl, 1, leader, machine) for a in d.answers]
    assert answers == [("late ping", False)]


def test_a_relay_round_never_exceeds_the_cap_and_keeps_every_ping():
    from paxctl.server.sessions import TouchRelay

    relay = TouchRelay()
    for s in range(S, S + 50):
        relay.touch(s)
    relay.ping(S + 100, "p")
    _, sessions = relay.take(limit=10)
    assert len(sessions) == 10 and S + 100 in sessions
    rest = relay.take(limit=100)
    assert rest is not None and len(rest[1]) == 50 - 9 + 1  # the others, plus the unacked ping
    assert relay.acked(rest[0], []) == [("p", True)]
