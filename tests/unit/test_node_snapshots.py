"""Snapshots and compaction: compact, InstallSnapshot, compacted promises, restart from a snapshot.

Unit tests drive single nodes by hand; the cluster scenarios use ``SnapCluster``, which adds to the
helpers' ``Cluster`` what a real driver does around snapshots: an application (here, the list of
applied commands) restored from ``Ready.snapshot``, local compaction that stores the snapshot on
the node's disk, and a network partition that drops messages while the cut-off node keeps ticking.
"""

from __future__ import annotations

import pytest
from helpers import (
    Cluster,
    accept,
    cmd,
    drain,
    make_node,
    of_type,
    prepare,
    promise,
    tick_until_campaign,
    val,
    vote,
)

from paxctl.core.acceptor import Acceptor
from paxctl.core.learner import Learner
from paxctl.core.membership import founding
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Message,
    Nack,
    Promise,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.node import Node, Role
from paxctl.core.snapshot_transfer import SnapshotSender
from paxctl.core.state import DurableState, Ready
from paxctl.core.types import NOOP, ZERO_BALLOT, Ballot, ChosenEntry, Command, Snapshot, Value

CFG3 = (founding({1: "", 2: "", 3: ""}),)

A = val(cmd(1, 1))
B = val(cmd(2, 1))
C = val(cmd(3, 1))

# ------------------------------------------------------------------ pulling a snapshot by hand


def pull(node: Node, frm: int, snap: Snapshot) -> None:
    """Node ``frm`` shows it knows more, the node asks it, and ``frm`` serves ``snap`` in
    chunks until the node has it all (the Ready with the snapshot is left for the test)."""
    # An Accepted names a ballot this node issued (peer messages are checked, validate.py).
    ours = node.ballot if node.ballot.node == node.id else Ballot(node.max_round, node.id)
    node.step(Accepted(frm, node.id, ours, (), snap.slot))
    r = drain(node)
    assert [m.to for m in of_type(r, CatchupRequest)] == [frm]
    sender = SnapshotSender(1 << 20)
    installed = node.counters["snapshots_installed"]
    node.step(sender.offer(frm, node.id, snap))
    for _ in range(1000):
        if node.counters["snapshots_installed"] > installed or not snap.app:
            return
        requests = of_type(drain(node), SnapshotRequest)
        assert requests, "the transfer stalled"
        for req in requests:
            answer = sender.answer(0, req, snap)
            assert not isinstance(answer, str)
            node.step(answer)
    raise AssertionError("the transfer did not end")


# ------------------------------------------------------------------ a tiny application


def encode_app(commands: list[Command]) -> bytes:
    return b";".join(f"{c.client}:{c.seq}:{c.data.hex()}".encode() for c in commands)


def decode_app(data: bytes) -> list[Command]:
    out = []
    for part in data.split(b";") if data else []:
        client, seq, hexdata = part.decode().split(":")
        out.append(Command(int(client), int(seq), bytes.fromhex(hexdata)))
    return out


class SnapCluster(Cluster):
    """``Cluster`` plus an application per node, local compaction and partitions."""

    def __init__(self, n: int = 3, seed: int = 0, **kw: object) -> None:
        super().__init__(n, seed, **kw)
        self.apps: dict[int, list[Command]] = {i: [] for i in self.nodes}
        self.readies: dict[int, list[Ready]] = {i: [] for i in self.nodes}
        self.cut: set[int] = set()  # partitioned: alive and ticking, but no message crosses
        self.dropped: list[Message] = []

    def ready(self, i: int) -> Ready:
        r = super().ready(i)  # persists, queues messages, records committed, advances
        self.readies[i].append(r)
        if r.snapshot is not None:  # 3. restore the application, then apply the slots
            self.apps[i] = decode_app(r.snapshot.app)
        self.apps[i].extend(c for a in r.committed for c in a.commands)
        kept = []
        for m in self.network:
            (self.dropped if {m.frm, m.to} & self.cut else kept).append(m)
        self.network = kept
        return r

    def restart(self, i: int) -> Node:
        node = super().restart(i)
        snap = self.disks[i].snapshot
        self.apps[i] = decode_app(snap.app) if snap else []
        self.readies[i] = []
        return node

    def compact(self, i: int) -> Snapshot:
        """What the driver does: snapshot the application at the applied slot, store it."""
        node = self.nodes[i]
        snap = node.compact(node.learner.applied, encode_app(self.apps[i]))
        self.disks[i].install(snap)
        return snap

    def clients(self, i: int) -> dict[int, int]:
        """The exactly-once table node i's application derives (the highest seq per client):
        the core keeps none, so it must come through snapshots in the application's bytes."""
        table: dict[int, int] = {}
        for c in self.apps[i]:
            table[c.client] = max(c.seq, table.get(c.client, -1))
        return table

    def received(self, i: int, kind: type[Message]) -> list:
        return [m for m in self.sent if m.to == i and isinstance(m, kind) and m not in self.dropped]


def commit_commands(cl: SnapCluster, leader: int, commands: list[Command]) -> None:
    for c in commands:
        assert cl.nodes[leader].propose(c)
        cl.tick()
    cl.tick(2)


def make_leader(node_id: int = 1, state: DurableState | None = None, n: int = 3) -> Node:
    """A node elected by hand: it campaigns and hears promises from just enough peers."""
    node = make_node(node_id, n=n, state=state)
    tick_until_campaign(node)
    drain(node)
    for peer in [p for p in range(1, n + 1) if p != node_id][: n // 2]:
        node.step(promise(peer, node_id, node.ballot, node.learner.commit + 1))
    assert node.role is Role.LEADER
    drain(node)
    return node


def follower_with_chosen(slots: dict[int, Value], node_id: int = 1) -> Node:
    """A follower that learned ``slots`` (1..k contiguous) from leader 2 and applied them."""
    node = make_node(node_id)
    b = Ballot(1, 2)
    node.step(accept(2, node_id, b, slots))
    node.step(accept(2, node_id, b, {}, commit=max(slots)))
    drain(node)
    assert node.learner.applied == max(slots)
    return node


# ------------------------------------------------------------------ Acceptor


def test_acceptor_compact_forgets_votes_up_to_the_slot_and_never_goes_back():
    acc = Acceptor()
    acc.accept(Ballot(1, 1), tuple(ChosenEntry(s, A) for s in range(1, 6)))
    acc.take_changes()
    acc.compact(3)
    assert acc.compacted == 3
    assert sorted(acc.votes) == [4, 5]
    assert [v.slot for v in acc.votes_from(1)] == [4, 5]
    acc.compact(2)  # an older snapshot changes nothing
    assert acc.compacted == 3
    assert sorted(acc.votes) == [4, 5]
    assert acc.take_changes() == (False, [])  # compaction is no promise and no vote


def test_acceptor_gives_no_vote_for_slots_at_or_below_its_compaction():
    acc = Acceptor(compacted=4)
    slots = acc.accept(Ballot(2, 1), (ChosenEntry(3, A), ChosenEntry(4, B), ChosenEntry(5, C)))
    assert slots == (5,)
    assert set(acc.votes) == {5}
    assert acc.take_changes() == (True, [vote(5, Ballot(2, 1), C)])
    # Only compacted slots: accepted (the promise still rises) but with no vote at all.
    assert acc.accept(Ballot(3, 1), (ChosenEntry(2, A),)) == ()
    assert acc.promised == Ballot(3, 1)
    assert acc.take_changes() == (True, [])


def test_restored_acceptor_drops_votes_at_or_below_compaction():
    votes = {s: vote(s, Ballot(1, 2), A) for s in (2, 3, 4)}
    acc = Acceptor(Ballot(1, 2), votes, compacted=3)
    assert acc.compacted == 3
    assert sorted(acc.votes) == [4]


def test_restored_acceptor_raises_its_promise_to_the_highest_vote():
    # A crash between writing a vote and writing the promise that came with it.
    votes = {2: vote(2, Ballot(4, 3), A), 5: vote(5, Ballot(6, 2), B), 7: vote(7, Ballot(5, 1), C)}
    acc = Acceptor(Ballot(3, 1), votes)
    assert acc.promised == Ballot(6, 2)
    assert not acc.prepare(Ballot(6, 1))
    assert acc.accept(Ballot(5, 3), (ChosenEntry(8, A),)) is None
    assert Acceptor(Ballot(9, 1), votes).promised == Ballot(9, 1)  # never lowered by a vote
    assert Acceptor(ZERO_BALLOT, {}).promised == ZERO_BALLOT


def test_restored_acceptor_raises_its_promise_for_a_vote_behind_its_compaction():
    # A vote at a ballot implies a promise of that ballot for every slot; dropping the vote
    # because its slot is compacted does not revoke the promise it implied.
    acc = Acceptor(ZERO_BALLOT, {2: vote(2, Ballot(4, 1), A)}, compacted=2)
    assert acc.votes == {}
    assert acc.promised == Ballot(4, 1)
    assert not acc.prepare(Ballot(3, 3))


# ------------------------------------------------------------------ Learner


def test_learner_compacts_only_at_the_applied_slot():
    lrn = Learner({1: A, 2: B, 3: C, 5: NOOP})
    lrn.take_new_chosen()
    with pytest.raises(ValueError):
        lrn.compact(2, b"x", CFG3)  # nothing applied yet
    assert [a.slot for a in lrn.take_committed()] == [1, 2, 3]
    with pytest.raises(ValueError):
        lrn.compact(2, b"x", CFG3)  # below the applied slot
    snap = lrn.compact(3, b"app", CFG3)
    assert snap == Snapshot(3, CFG3, b"app")
    assert lrn.snapshot == snap
    assert lrn.base == 3
    assert set(lrn.chosen) == {5}
    assert lrn.commit == lrn.applied == 3
    with pytest.raises(ValueError):
        lrn.compact(3, b"again", CFG3)  # already compacted there


def test_learner_after_compaction_treats_old_slots_as_chosen_and_serves_the_rest():
    lrn = Learner({1: A, 2: B})
    lrn.take_committed()
    lrn.compact(2, b"", (1,))
    assert lrn.learn(3, C) and lrn.learn(4, NOOP)
    lrn.take_new_chosen()
    assert lrn.is_chosen(1) and lrn.is_chosen(2) and not lrn.is_chosen(5)
    assert not lrn.learn(2, B)  # compacted: known already
    assert not lrn.learn(1, C)  # even a different value is no news (it is not held any more)
    assert lrn.take_new_chosen() == []
    assert [e.slot for e in lrn.entries_from(1, 10)] == [3, 4]
    assert [e.slot for e in lrn.entries_from(4, 10)] == [4]


def test_learner_install_jumps_commit_and_applied():
    lrn = Learner({1: A, 7: B, 8: C, 10: NOOP})
    lrn.take_new_chosen()
    assert lrn.commit == 1
    lrn.take_committed()
    snap = Snapshot(6, CFG3, b"six")
    assert lrn.install(snap)
    assert lrn.snapshot == snap
    assert lrn.base == 6
    assert lrn.commit == 8  # slots 7 and 8 were learned already and follow the snapshot
    assert lrn.applied == 6
    assert set(lrn.chosen) == {7, 8, 10}
    out = lrn.take_committed()
    assert [a.slot for a in out] == [7, 8]
    assert out[0].commands == B
    assert not lrn.install(Snapshot(5, CFG3, b"old"))  # covers nothing new
    assert not lrn.install(Snapshot(8, CFG3, b"known"))
    assert lrn.snapshot == snap


def test_learner_built_from_a_snapshot_starts_at_its_slot():
    snap = Snapshot(4, CFG3, b"four")
    lrn = Learner({2: A, 5: B, 6: C}, snap)
    assert lrn.base == lrn.applied == 4
    assert set(lrn.chosen) == {5, 6}  # slot 2 is behind the snapshot
    assert lrn.commit == 6  # the log after the snapshot counts from it
    assert lrn.take_new_chosen() == []  # on disk already
    assert [a.slot for a in lrn.take_committed()] == [5, 6]


# ------------------------------------------------------------------ DurableState


def test_durable_state_install_keeps_the_newest_snapshot_and_drops_what_it_covers():
    d = DurableState(
        promised=Ballot(2, 1),
        max_round=2,
        votes={s: vote(s, Ballot(2, 1), A) for s in (3, 4, 5)},
        chosen={3: A, 4: A, 5: A},
    )
    snap = Snapshot(4, CFG3, b"four")
    d.install(snap)
    assert d.snapshot == snap
    assert d.compacted == 4
    assert set(d.votes) == {5}
    assert set(d.chosen) == {5}
    assert d.promised == Ballot(2, 1) and d.max_round == 2
    d.install(Snapshot(3, CFG3, b"older"))  # older: ignored
    assert d.snapshot == snap and d.compacted == 4
    copy = d.copy()
    d.install(Snapshot(6, CFG3, b"six"))
    assert d.compacted == 6 and d.votes == {} and d.chosen == {}
    assert copy.snapshot == snap and copy.compacted == 4 and set(copy.votes) == {5}


def test_durable_state_persist_installs_a_peers_snapshot_before_the_log_of_the_same_ready():
    d = DurableState(chosen={1: A, 2: B})
    snap = Snapshot(5, CFG3, b"five")
    d.persist(Ready(snapshot=snap, chosen=(ChosenEntry(6, C),)))
    assert d.snapshot == snap and d.compacted == 5
    assert d.chosen == {6: C}


# ------------------------------------------------------------------ Node.compact


def test_node_compact_returns_a_snapshot_and_forgets_votes_and_chosen_values():
    node = follower_with_chosen({1: A, 2: B, 3: C})
    node.step(accept(2, 1, Ballot(1, 2), {4: NOOP}))  # a vote beyond the applied slot
    drain(node)
    snap = node.compact(3, b"app")
    assert snap == Snapshot(3, CFG3, b"app")
    assert node.learner.snapshot == snap
    assert node.acceptor.compacted == 3
    assert sorted(node.acceptor.votes) == [4]
    assert node.learner.chosen == {}
    st = node.status()
    assert st["commit"] == st["applied"] == st["compacted"] == 3
    r = drain(node)  # the driver stored the returned snapshot itself: nothing to persist again
    assert r.snapshot is None and not r.must_persist


def test_node_compact_refuses_any_slot_but_the_last_applied():
    node = follower_with_chosen({1: A, 2: B})
    with pytest.raises(ValueError):
        node.compact(1, b"")
    with pytest.raises(ValueError):
        node.compact(3, b"")
    node.step(accept(2, 1, Ballot(1, 2), {3: C}))
    node.step(accept(2, 1, Ballot(1, 2), {}, commit=3))  # chosen, not yet handed out
    assert node.learner.commit == 3
    with pytest.raises(ValueError):
        node.compact(3, b"")
    drain(node)
    assert node.compact(3, b"").slot == 3
    assert node.acceptor.compacted == 3


# ------------------------------------------------------------------ catch-up and InstallSnapshot


def test_catchup_request_at_or_below_the_snapshot_is_answered_with_an_offer():
    node = follower_with_chosen({1: A, 2: B, 3: C})
    snap = node.compact(3, b"three")
    node.step(accept(2, 1, Ballot(1, 2), {4: NOOP}))
    node.step(accept(2, 1, Ballot(1, 2), {}, commit=4))
    drain(node)
    for from_slot in (1, 3):
        node.step(CatchupRequest(3, 1, from_slot))
        r = drain(node)
        digest = SnapshotSender(1).digest(snap)
        assert r.messages == (SnapshotOffer(1, 3, 3, CFG3, len(b"three"), digest),)
    node.step(CatchupRequest(3, 1, 4))  # above it: the log
    r = drain(node)
    assert r.messages == (CatchupReply(1, 3, (ChosenEntry(4, NOOP),), 4),)
    assert node.counters["snapshots_sent"] == 2


def test_install_snapshot_sets_ready_snapshot_and_jumps_commit_and_applied():
    node = make_node(3)
    snap = Snapshot(5, CFG3, b"five")
    pull(node, 1, snap)
    assert node.learner.commit == node.learner.applied == 5
    r = drain(node)
    assert r.snapshot == snap
    assert r.must_persist
    assert r.committed == ()  # the snapshot stands for slots 1..5: nothing to apply one by one
    assert node.counters["snapshots_installed"] == 1
    assert drain(node).snapshot is None  # handed to the driver once


def test_install_snapshot_makes_the_acceptor_forget_the_votes_it_covers():
    node = make_node(3)
    b = Ballot(1, 1)
    node.step(accept(1, 3, b, {2: A, 4: B, 6: C}))
    drain(node)
    snap = Snapshot(5, CFG3, b"x")
    pull(node, 1, snap)
    drain(node)
    assert node.acceptor.compacted == 5
    assert sorted(node.acceptor.votes) == [6]
    # A Promise now reports the compaction point and only the votes above it.
    node.step(prepare(1, 3, Ballot(2, 1), 1))  # (from its leader: others it would ignore)
    (p,) = of_type(drain(node), Promise)
    assert p.compacted == 5
    assert p.commit == 5
    assert [v.slot for v in p.accepted] == [6]
    # ... and an Accept for covered slots gets no vote for them.
    node.step(accept(1, 3, Ballot(2, 1), {4: B, 6: C, 7: A}))
    r = drain(node)
    (a,) = of_type(r, Accepted)
    assert a.slots == (6, 7)
    assert {v.slot for v in r.votes} == {6, 7}


def test_install_snapshot_then_asks_for_the_log_after_it():
    node = make_node(3)
    # A leader's heartbeat says slot 9 is committed; the node asks for the log from 1.
    node.step(accept(1, 3, Ballot(1, 1), {}, commit=9))
    (req,) = of_type(drain(node), CatchupRequest)
    assert (req.to, req.from_slot) == (1, 1)
    offer = SnapshotSender(1).offer(1, 3, Snapshot(6, CFG3, b""))
    node.step(offer)  # (an empty snapshot is complete at once)
    r = drain(node)
    assert r.snapshot is not None
    (req,) = of_type(r, CatchupRequest)
    assert (req.to, req.from_slot) == (1, 7)
    node.step(CatchupReply(1, 3, tuple(ChosenEntry(s, val(cmd(5, s))) for s in (7, 8, 9)), 9))
    r = drain(node)
    assert [a.slot for a in r.committed] == [7, 8, 9]
    assert node.learner.commit == 9
    assert of_type(r, CatchupRequest) == []


def test_stale_install_snapshot_changes_nothing():
    node = follower_with_chosen({1: A, 2: B, 3: C})
    ours = Ballot(node.max_round, node.id)  # an Accepted answers a ballot of this node's
    node.step(Accepted(2, 1, ours, (), 4))  # so that node 2 was asked
    drain(node)
    node.step(SnapshotSender(1).offer(2, 1, Snapshot(2, CFG3, b"old")))
    r = drain(node)
    assert node.counters["snapshot_stale"] == 1
    assert of_type(r, SnapshotRequest) == []
    assert r.snapshot is None
    assert node.learner.commit == node.learner.applied == 3
    assert node.acceptor.compacted == 0
    assert node.counters["snapshots_installed"] == 0


# ------------------------------------------------------------------ compacted promises


@pytest.mark.parametrize("compacted", [1, 4])
def test_candidate_abandons_when_a_promiser_compacted_at_or_above_its_first_slot(compacted):
    node = make_node(1)  # commit 0: it campaigns from slot 1
    tick_until_campaign(node)
    drain(node)
    b = node.ballot
    node.step(promise(2, 1, b, 1, commit=compacted, compacted=compacted))
    assert node.role is Role.FOLLOWER
    assert node.leader is None
    r = drain(node)
    assert [(m.to, m.from_slot) for m in of_type(r, CatchupRequest)] == [(2, 1)]
    assert of_type(r, Accept) == []
    node.step(promise(3, 1, b, 1))  # a quorum's worth of promises: too late, abandoned
    assert node.role is Role.FOLLOWER
    assert of_type(drain(node), Accept) == []


def test_candidate_above_every_compaction_point_leads():
    node = follower_with_chosen({1: A, 2: B, 3: C})
    node.compact(3, b"")
    tick_until_campaign(node)
    drain(node)
    node.step(promise(2, 1, node.ballot, 4, commit=3, compacted=3))
    assert node.role is Role.LEADER


def test_a_leader_elected_before_a_compacted_promise_arrives_ignores_it():
    node = make_leader()
    node.step(promise(3, 1, node.ballot, 1, commit=5, compacted=5))
    assert node.role is Role.LEADER


def test_leader_that_installs_a_snapshot_covering_its_slots_steps_down():
    node = make_leader()  # campaigned from slot 1
    node.propose(cmd(4, 1))
    drain(node)
    assert 1 in node.proposer.inflight
    snap = Snapshot(3, CFG3, b"three")
    pull(node, 2, snap)
    assert node.role is Role.FOLLOWER
    assert node.leader is None
    assert node.learner.commit == node.learner.applied == 3
    assert node.acceptor.compacted == 3
    r = drain(node)
    assert r.snapshot == snap
    for _ in range(4):  # no more accepts at the old ballot
        node.tick()
        assert of_type(drain(node), Accept) == []


def test_leader_ignores_a_snapshot_below_its_first_slot():
    state = DurableState(chosen={1: A, 2: B, 3: C})
    node = make_leader(state=state)  # commit 3: campaigned from slot 4
    drain(node)
    node.step(Accepted(2, 1, node.ballot, (), 4))  # node 2 knows more: the leader asks it
    drain(node)
    node.step(SnapshotSender(1).offer(2, 1, Snapshot(3, CFG3, b"")))
    assert node.role is Role.LEADER
    assert drain(node).snapshot is None


# ------------------------------------------------------------------ restart from a snapshot


def test_restarted_node_starts_at_the_snapshot_and_hands_a_retry_on_to_the_application():
    snap = Snapshot(5, CFG3, b"five")
    disk = DurableState(promised=Ballot(2, 2), max_round=1)
    disk.install(snap)
    node = make_node(1, state=disk)
    assert node.learner.commit == node.learner.applied == 5
    assert node.acceptor.compacted == 5
    assert node.status()["compacted"] == 5
    r = drain(node)
    assert r.committed == () and r.snapshot is None  # the driver restores its own snapshot
    # A retry chosen again (seq 3 took effect before the snapshot) is handed on with the rest:
    # the application's own table, restored from the snapshot's bytes, answers it.
    b = Ballot(3, 2)
    node.step(accept(2, 1, b, {6: val(cmd(42, 3), cmd(42, 4))}))
    node.step(accept(2, 1, b, {}, commit=6))
    (applied,) = drain(node).committed
    assert applied.slot == 6
    assert applied.commands == (cmd(42, 3), cmd(42, 4))


def test_restarted_leader_from_a_snapshot_proposes_after_it_what_it_is_given():
    snap = Snapshot(5, CFG3, b"five")
    disk = DurableState()
    disk.install(snap)
    node = make_leader(state=disk)
    assert node.proposer.campaign_from == 6
    node.propose(cmd(42, 3))  # a retry (the server proposes one only if its machine lags)
    node.propose(cmd(42, 4))  # and the client's next command
    r = drain(node)
    proposed = [e for m in of_type(r, Accept) for e in m.entries]
    assert {e.slot for e in proposed} == {6}
    assert {e.value for e in proposed} == {(cmd(42, 3), cmd(42, 4))}


def test_promise_implied_by_a_vote_survives_compaction_and_restart():
    # The disk holds a vote at 7.2 but an older promise (a crash came between the two writes).
    # The restored acceptor rightly treats 7.2 as promised ... but that promise lives only in the
    # vote. Once the slot is compacted, the vote is dropped, and a restart must not forget 7.2.
    disk = DurableState(
        promised=Ballot(1, 1),
        max_round=1,
        votes={3: vote(3, Ballot(7, 2), C)},
        chosen={1: A, 2: B, 3: C},
    )
    node = make_node(1, state=disk.copy())
    assert node.acceptor.promised == Ballot(7, 2)
    r = node.ready()
    disk.persist(r)
    node.advance()
    disk.install(node.compact(3, b"three"))
    node = make_node(1, seed=1, state=disk.copy())
    node.step(prepare(3, 1, Ballot(5, 3), 4))
    r = drain(node)
    assert of_type(r, Promise) == [], "promised 5.3 after having voted at 7.2"
    assert of_type(r, Nack) == [Nack(1, 3, Ballot(5, 3), Ballot(7, 2))]


# ------------------------------------------------------------------ cluster scenarios


@pytest.mark.parametrize(
    ("seed", "extra"),
    [(1, 0), (3, 0), (1, 30), (2, 30)],
    ids=["short-cut", "short-cut-2", "long-cut-lagger-later-leads", "long-cut"],
)
def test_partitioned_node_catches_up_by_snapshot_then_log(seed, extra):
    # ``extra``: ticks the partition lasts beyond the commands, long enough for the cut-off node
    # to campaign (in vain) and come back with a higher ballot that deposes the leader.
    cl = SnapCluster(3, seed=seed)
    leader = cl.run_until_leader()
    follower, lagger = (i for i in sorted(cl.nodes) if i != leader)
    commit_commands(cl, leader, [cmd(100, s) for s in range(3)])
    assert all(cl.apps[i] == [cmd(100, s) for s in range(3)] for i in cl.nodes)

    cl.cut.add(lagger)  # partitioned: it keeps ticking, but hears nothing
    commit_commands(cl, leader, [cmd(101, s) for s in range(4)] + [cmd(100, 3)])
    cl.tick(extra)
    assert cl.leaders() == [leader]
    assert (cl.nodes[lagger].counters["campaigns"] > 0) == (extra > 0)
    snaps = {i: cl.compact(i) for i in (leader, follower)}
    assert snaps[leader] == snaps[follower]
    base = snaps[leader].slot
    assert base > cl.nodes[lagger].learner.commit
    assert cl.disks[leader].compacted == base and not cl.disks[leader].chosen.keys() & {1, base}
    # More slots after the snapshot, still without the lagger.
    commit_commands(cl, leader, [cmd(102, s) for s in range(3)])
    top = cl.nodes[leader].learner.commit
    assert top > base
    assert cl.nodes[lagger].learner.commit < base

    before = len(cl.applied[lagger])
    cl.cut.clear()
    cl.sent.clear()
    cl.tick(40)
    new_leader = cl.leaders()
    assert len(new_leader) == 1
    expected = (
        [cmd(100, s) for s in range(3)]
        + [cmd(101, s) for s in range(4)]
        + [cmd(100, 3)]
        + [cmd(102, s) for s in range(3)]
    )
    for i in cl.nodes:
        assert cl.apps[i] == expected, i
        assert cl.clients(i) == {100: 3, 101: 3, 102: 2}, i
        assert cl.nodes[i].learner.commit == cl.nodes[i].learner.applied
    # The lagger got the snapshot (the driver saw it in a Ready) and then the log after it.
    installs = cl.received(lagger, SnapshotOffer)
    assert installs and installs[0].slot == base
    seen = [r.snapshot for r in cl.readies[lagger] if r.snapshot is not None]
    assert seen == [snaps[leader]]
    assert cl.nodes[lagger].learner.snapshot == snaps[leader]
    assert cl.disks[lagger].snapshot == snaps[leader]
    assert cl.nodes[lagger].counters["snapshots_installed"] == 1
    first_install = cl.sent.index(installs[0])
    replies = [m for m in cl.received(lagger, CatchupReply) if m.entries]
    assert replies, "no log after the snapshot"
    assert all(cl.sent.index(m) > first_install for m in replies)
    slots_after = sorted({e.slot for m in replies for e in m.entries})
    assert slots_after[0] == base + 1
    # What it applied one by one since the heal starts right after the snapshot.
    lagger_slots = [a.slot for a in cl.applied[lagger][before:]]
    assert lagger_slots[: top - base] == list(range(base + 1, top + 1))
    # It led (if ever) only once caught up past the snapshot, never from behind it.
    assert all(m.commit >= base for m in cl.sent if isinstance(m, Accept) and m.frm == lagger)
    # It never got (or asked for) a compacted slot one by one.
    assert all(e.slot > base for m in cl.received(lagger, CatchupReply) for e in m.entries)
    # And the cluster keeps going with everyone.
    commit_commands(cl, new_leader[0], [cmd(103, 0)])
    for i in cl.nodes:
        assert cl.apps[i] == [*expected, cmd(103, 0)]


def test_lagging_candidate_does_not_lead_over_compacted_acceptors_and_catches_up():
    cl = SnapCluster(3, seed=2)
    leader = cl.run_until_leader()
    follower, lagger = (i for i in sorted(cl.nodes) if i != leader)
    cl.down.add(lagger)
    commit_commands(cl, leader, [cmd(200, s) for s in range(5)])
    for i in (leader, follower):
        cl.compact(i)
    base = cl.nodes[leader].learner.base
    commit_commands(cl, leader, [cmd(201, 0), cmd(201, 1)])
    top = cl.nodes[leader].learner.commit
    # The leader goes; the lagger comes back and campaigns from slot 1 before anyone else does.
    cl.down = {leader}
    cl.restart(follower)  # (fresh incarnation: it knows of no live leader to stay loyal to)
    cl.restart(lagger)
    assert cl.nodes[lagger].learner.commit < base
    cl.sent.clear()
    tick_until_campaign(cl.nodes[lagger])
    ballot = cl.nodes[lagger].ballot
    cl.settle()
    promises = [m for m in cl.sent if isinstance(m, Promise) and m.to == lagger]
    assert any(p.compacted >= base and p.ballot == ballot for p in promises)
    assert cl.nodes[lagger].role is Role.FOLLOWER
    assert not [m for m in cl.sent if isinstance(m, Accept) and m.ballot == ballot]
    # It caught up instead: by the snapshot, then (the promiser's commit told it how far the
    # cluster got) by the chosen slots after it.
    assert {m.slot for m in cl.received(lagger, SnapshotOffer)} == {base}
    assert [r.snapshot.slot for r in cl.readies[lagger] if r.snapshot] == [base]
    assert cl.nodes[lagger].learner.commit == cl.nodes[lagger].learner.applied == top
    assert cl.nodes[lagger].acceptor.compacted == base
    assert cl.apps[lagger] == [cmd(200, s) for s in range(5)] + [cmd(201, 0), cmd(201, 1)]
    assert cl.clients(lagger) == {200: 4, 201: 1}
    # Now above the compaction point, its next campaign may succeed, and it keeps the slots
    # decided after the snapshot (adopted from the follower's votes).
    cl.elect(lagger)
    assert cl.nodes[lagger].learner.commit >= top
    assert cl.clients(lagger) == cl.clients(follower) == {200: 4, 201: 1}
    commit_commands(cl, lagger, [cmd(202, 0)])
    expected = [cmd(200, s) for s in range(5)] + [cmd(201, 0), cmd(201, 1), cmd(202, 0)]
    assert cl.apps[lagger] == cl.apps[follower] == expected
