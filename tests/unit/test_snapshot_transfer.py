"""State transfer in chunks (core/snapshot_transfer.py): each side alone, then through a Node.

Every refusal has a test: an offer or chunk from a node that was not asked, a stale offer, an
offer of other voters or over the size cap, chunks off the grid, outside the window, of the
wrong length or slot, a digest that does not match, and bytes the application refuses.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from helpers import drain, make_node, of_type
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.core.codec import encode_snapshot
from paxctl.core.membership import founding
from paxctl.core.messages import (
    Accepted,
    CatchupRequest,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.node import Node
from paxctl.core.snapshot_transfer import (
    REFUSALS,
    SnapshotReceiver,
    SnapshotSender,
    digest_of,
)
from paxctl.core.types import Ballot, Snapshot

VOTERS = (founding({1: "", 2: "", 3: ""}),)  # the configurations a snapshot carries
SNAP = Snapshot(40, VOTERS, bytes(range(256)) * 4 + b"tail")  # 1028 bytes


def receiver(chunk: int = 100, window: int = 3, max_bytes: int = 1 << 20) -> SnapshotReceiver:
    return SnapshotReceiver(
        3,
        chunk=chunk,
        window=window,
        retry_ticks=2,
        give_up_ticks=10,
        max_bytes=max_bytes,
        counters=Counter(),
    )


def offer(snap: Snapshot = SNAP, frm: int = 1) -> SnapshotOffer:
    return SnapshotSender(1 << 20).offer(frm, 3, snap)


def serve(req: SnapshotRequest, snap: Snapshot = SNAP) -> SnapshotChunk:
    out = SnapshotSender(1 << 20).answer(0, req, snap)
    assert isinstance(out, SnapshotChunk)
    return out


def refusals(rx: SnapshotReceiver) -> dict[str, int]:
    return {k: v for k, v in rx.counters.items() if k in REFUSALS}


# ------------------------------------------------------------------ the sender


def test_sender_cuts_chunks_from_the_bytes_it_holds_and_hashes_once():
    tx = SnapshotSender(64)
    o = tx.offer(1, 3, SNAP)
    assert (o.slot, o.configs, o.size, o.digest) == (40, VOTERS, 1028, digest_of(SNAP.app))
    assert tx.answer(0, SnapshotRequest(3, 1, 40, 1000, 64), SNAP) == SnapshotChunk(
        1, 3, 40, 1000, SNAP.app[1000:]
    )
    assert tx.digest(SNAP) is tx.digest(SNAP)  # cached per slot


@pytest.mark.parametrize(
    ("req", "why"),
    [
        (SnapshotRequest(3, 1, 41, 0, 10), "snapshot_bad_request"),  # never had that slot
        (SnapshotRequest(3, 1, 40, 1028, 10), "snapshot_bad_request"),  # past the end
        (SnapshotRequest(3, 1, 40, 0, 65), "snapshot_bad_request"),  # more than a chunk
        (SnapshotRequest(3, 1, 40, 0, 0), "snapshot_bad_request"),  # nothing
    ],
)
def test_sender_refuses_requests_for_what_it_does_not_hold(req, why):
    assert SnapshotSender(64).answer(0, req, SNAP) == why
    assert SnapshotSender(64).answer(0, req, None) == "snapshot_bad_request"


def test_sender_that_moved_on_offers_its_newer_snapshot():
    newer = Snapshot(50, VOTERS, b"newer")
    out = SnapshotSender(64).answer(0, SnapshotRequest(3, 1, 40, 0, 10), newer)
    assert isinstance(out, SnapshotOffer) and (out.frm, out.to, out.slot) == (1, 3, 50)


# ------------------------------------------------------------------ the receiver


def run(rx: SnapshotReceiver, snap: Snapshot = SNAP) -> Snapshot | None:
    step = rx.on_offer(0, offer(snap), asked=1, commit=0)
    while isinstance(step, list) and step:
        nxt: list[SnapshotRequest] = []
        for req in step:
            out = rx.on_chunk(0, serve(req, snap))
            if isinstance(out, Snapshot) or out is None:
                return out
            nxt += out
        step = nxt
    return step if isinstance(step, Snapshot) else None


def test_receiver_pulls_a_window_of_chunks_and_returns_the_whole_snapshot():
    rx = receiver()
    reqs = rx.on_offer(0, offer(), asked=1, commit=0)
    assert isinstance(reqs, list)
    assert [(r.to, r.slot, r.offset, r.length) for r in reqs] == [
        (1, 40, 0, 100),
        (1, 40, 100, 100),
        (1, 40, 200, 100),
    ]
    assert rx.active
    assert run(receiver()) == SNAP
    assert not refusals(rx)


def test_empty_snapshot_is_complete_on_the_offer():
    empty = Snapshot(7, VOTERS, b"")
    assert receiver().on_offer(0, offer(empty), asked=1, commit=0) == empty


def test_chunks_out_of_order_and_duplicated_are_put_in_place():
    rx = receiver(chunk=100, window=4)
    reqs = rx.on_offer(0, offer(), asked=1, commit=0)
    assert isinstance(reqs, list)
    chunks = [serve(r) for r in reqs]
    assert rx.on_chunk(0, chunks[2]) == []  # ahead of the contiguous end: kept
    assert rx.on_chunk(0, chunks[2]) == []  # twice: a duplicate, harmless
    assert rx.on_chunk(0, SnapshotChunk(1, 3, 40, 400, chunks[0].data)) is None  # not in window
    assert refusals(rx) == {"snapshot_bad_chunk": 1}
    more = rx.on_chunk(0, chunks[0])
    assert isinstance(more, list)
    assert rx.on_chunk(0, chunks[0]) == []  # a duplicate of a chunk already in: harmless
    assert rx.transfer is not None and len(rx.transfer.data) == 100


@pytest.mark.parametrize(
    ("chunk_of", "why"),
    [
        (lambda c: SnapshotChunk(2, 3, c.slot, c.offset, c.data), "snapshot_unsolicited"),
        (lambda c: SnapshotChunk(1, 3, 39, c.offset, c.data), "snapshot_bad_chunk"),
        (lambda c: SnapshotChunk(1, 3, 40, 50, c.data), "snapshot_bad_chunk"),  # off the grid
        (lambda c: SnapshotChunk(1, 3, 40, 900, c.data), "snapshot_bad_chunk"),  # not in window
        (lambda c: SnapshotChunk(1, 3, 40, 0, c.data[:-1]), "snapshot_bad_chunk"),  # short
        (lambda c: SnapshotChunk(1, 3, 40, 0, c.data + b"x"), "snapshot_bad_chunk"),  # long
    ],
)
def test_bad_chunks_are_refused_and_counted(chunk_of, why):
    rx = receiver()
    reqs = rx.on_offer(0, offer(), asked=1, commit=0)
    assert isinstance(reqs, list)
    assert rx.on_chunk(0, chunk_of(serve(reqs[0]))) is None
    assert refusals(rx) == {why: 1}
    assert rx.transfer is not None and not rx.transfer.data


def test_a_chunk_without_any_transfer_is_unsolicited():
    rx = receiver()
    assert rx.on_chunk(0, SnapshotChunk(1, 3, 40, 0, b"x")) is None
    assert refusals(rx) == {"snapshot_unsolicited": 1}


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"asked": None}, "snapshot_unsolicited"),  # nobody asked
        ({"asked": 2}, "snapshot_unsolicited"),  # asked another node
        ({"commit": 40}, "snapshot_stale"),  # nothing new
        ({"snap": Snapshot(40, (), b"x")}, "snapshot_bad_offer"),  # no configuration
        ({"max_bytes": 1000}, "snapshot_bad_offer"),  # over the cap
    ],
)
def test_bad_offers_are_refused_and_counted(kw, why):
    rx = receiver(max_bytes=kw.pop("max_bytes", 1 << 20))
    o = offer(kw.pop("snap", SNAP))
    assert rx.on_offer(0, o, asked=kw.get("asked", 1), commit=kw.get("commit", 0)) is None
    assert refusals(rx) == {why: 1}
    assert rx.transfer is None


def test_digest_mismatch_throws_the_bytes_away():
    rx = receiver(chunk=2000)
    forged = SnapshotOffer(1, 3, 40, VOTERS, len(SNAP.app), b"\x00" * 32)
    (req,) = rx.on_offer(0, forged, asked=1, commit=0) or []
    assert rx.on_chunk(0, serve(req)) is None
    assert refusals(rx) == {"snapshot_digest_mismatch": 1}
    assert rx.transfer is None


def test_lost_chunks_are_asked_again_on_ticks_then_the_source_is_abandoned():
    rx = receiver()
    reqs = rx.on_offer(0, offer(), asked=1, commit=0)
    assert isinstance(reqs, list) and len(reqs) == 3
    assert rx.tick(1) == []  # not yet
    again = rx.tick(2)
    assert [r.offset for r in again] == [0, 100, 200]
    assert rx.tick(10) == []
    assert rx.counters["snapshot_transfers_abandoned"] == 1
    assert not rx.active  # catch-up by log may ask someone else now
    # A later offer of something else from a node asked then is taken.
    assert rx.on_chunk(11, serve(reqs[0])) is None  # the abandoned source: unsolicited


def test_an_abandoned_transfer_resumes_from_its_offset_with_a_new_source():
    rx = receiver()
    reqs = rx.on_offer(0, offer(), asked=1, commit=0)
    assert isinstance(reqs, list)
    for r in reqs:
        rx.on_chunk(0, serve(r))
    rx.tick(20)  # abandoned after 300 bytes
    assert rx.transfer is not None and len(rx.transfer.data) == 300
    resumed = rx.on_offer(21, offer(frm=2), asked=2, commit=0)
    assert isinstance(resumed, list)
    assert [(r.to, r.offset) for r in resumed] == [(2, 300), (2, 400), (2, 500)]


def test_a_newer_offer_from_the_source_starts_over():
    rx = receiver()
    rx.on_offer(0, offer(), asked=1, commit=0)
    newer = Snapshot(50, VOTERS, b"n" * 150)
    reqs = rx.on_offer(1, offer(newer), asked=None, commit=0)  # the answer to a request
    assert isinstance(reqs, list) and [(r.slot, r.offset) for r in reqs] == [(50, 0), (50, 100)]
    assert rx.on_offer(2, offer(SNAP), asked=None, commit=0) is None  # older: stale
    assert refusals(rx) == {"snapshot_stale": 1}


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 2000),
    chunk=st.integers(16, 700),
    window=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_any_loss_duplication_and_order_ends_with_exactly_the_bytes(size, chunk, window, seed):
    rng = random.Random(seed)
    snap = Snapshot(9, VOTERS, rng.randbytes(size))
    rx = SnapshotReceiver(
        3,
        chunk=chunk,
        window=window,
        retry_ticks=1,
        give_up_ticks=10**6,
        max_bytes=1 << 20,
        counters=Counter(),
    )
    step = rx.on_offer(0, offer(snap), asked=1, commit=0)
    wire: list[SnapshotChunk] = []
    now = 0
    while not isinstance(step, Snapshot):
        for req in step or []:
            wire.append(serve(req, snap))
        if rng.random() < 0.3 or not wire:
            now += 1
            step = rx.tick(now)
            continue
        rng.shuffle(wire)
        c = wire.pop()
        if rng.random() < 0.2:
            continue  # lost
        if rng.random() < 0.2:
            wire.append(c)  # duplicated
        step = rx.on_chunk(now, c)
        assert step is not None or rx.counters["snapshot_bad_chunk"]
        assert rx.transfer is None or len(rx.transfer.early) <= window
    assert step == snap


# ------------------------------------------------------------------ through a node


def lagging_node(check=None) -> Node:
    node = make_node(3)
    if check is not None:
        node.check_snapshot = check
    node.step(Accepted(1, 3, Ballot(node.max_round, node.id), (), 40))  # node 1 knows more: ask it
    (req,) = of_type(drain(node), CatchupRequest)
    assert req.to == 1
    return node


def feed(node: Node, snap: Snapshot = SNAP, frm: int = 1) -> None:
    tx = SnapshotSender(1 << 20)
    node.step(tx.offer(frm, node.id, snap))
    for _ in range(100):
        reqs = of_type(drain(node), SnapshotRequest)
        if not reqs:
            return
        for r in reqs:
            out = tx.answer(0, r, snap)
            assert not isinstance(out, str)
            node.step(out)


def test_a_node_installs_only_what_it_pulled_from_the_peer_it_asked():
    node = lagging_node()
    feed(node, frm=2)  # node 2 was not asked
    assert node.counters["snapshot_unsolicited"] == 1
    assert node.learner.commit == 0
    node = make_node(3, election_ticks=10, snapshot_chunk_bytes=100)
    node.step(Accepted(1, 3, Ballot(node.max_round, node.id), (), 40))
    drain(node)
    node.step(SnapshotSender(1 << 20).offer(1, 3, SNAP))
    r = drain(node)
    assert len(of_type(r, SnapshotRequest)) == 4  # the default window
    assert not of_type(r, CatchupRequest)  # no catch-up by log while the snapshot comes


def test_a_snapshot_the_application_refuses_is_neither_persisted_nor_applied():
    seen: list[Snapshot] = []

    def refuse(snap: Snapshot) -> bool:
        seen.append(snap)
        return False

    node = lagging_node(refuse)
    feed(node)
    assert seen == [SNAP]  # checked once, whole
    assert node.counters["snapshot_rejected"] == 1
    assert node.counters["snapshots_installed"] == 0
    r = drain(node)
    assert r.snapshot is None and node.learner.commit == 0 and node.acceptor.compacted == 0


def test_a_snapshot_the_application_accepts_is_installed_once():
    node = lagging_node(lambda s: True)
    feed(node)
    assert node.counters["snapshots_installed"] == 1
    assert node.learner.commit == 40


def test_an_unsolicited_offer_or_chunk_changes_nothing_on_a_node():
    node = make_node(3)
    node.step(SnapshotSender(1 << 20).offer(1, 3, SNAP))
    node.step(SnapshotChunk(1, 3, 40, 0, SNAP.app))
    r = drain(node)
    assert r.snapshot is None and r.messages == ()
    assert node.counters["snapshot_unsolicited"] == 2


def test_a_snapshot_replaced_while_pulled_stays_pinned_until_pulls_stop():
    tx = SnapshotSender(64, keep_ticks=5)
    newer = Snapshot(50, VOTERS, b"newer")
    req = SnapshotRequest(3, 1, 40, 0, 10)
    assert isinstance(tx.answer(0, req, SNAP), SnapshotChunk)
    tx.replaced(2, SNAP)  # compacted again while node 3 pulls slot 40
    assert isinstance(tx.answer(3, req, newer), SnapshotChunk)  # still served
    tx.tick(7, newer)
    assert isinstance(tx.answer(7, req, newer), SnapshotChunk)  # pulled at 3: kept until 8
    tx.tick(12, newer)
    assert isinstance(tx.answer(12, req, newer), SnapshotOffer)  # nobody pulled: offer the newer
    idle = SnapshotSender(64, keep_ticks=5)
    idle.replaced(0, SNAP)  # nobody was pulling it: not pinned
    assert isinstance(idle.answer(1, req, newer), SnapshotOffer)


class Stored:
    """Bytes held outside the node (as a snapshot's file is): a length and slices only."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, piece: slice, /) -> bytes:
        self.reads += 1
        return self.data[piece]


def test_a_stored_snapshot_is_served_from_its_file_with_the_digest_of_its_bytes():
    node = lagging_node(lambda s: True)
    feed(node)
    drain(node)
    stored = Stored(SNAP.app)
    assert not node.snapshot_stored(39, stored)  # not the snapshot held
    assert not node.snapshot_stored(40, Stored(SNAP.app[:-1]))  # not its size
    assert node.snapshot_stored(40, stored)
    assert not node.snapshot_stored(40, stored)  # stored already
    held = node.learner.snapshot
    assert held is not None and held.app == b"" and held.stored is stored
    assert stored.reads == 0  # the digest came from the bytes in memory
    node.step(CatchupRequest(2, 3, 1))
    (o,) = of_type(drain(node), SnapshotOffer)
    assert (o.slot, o.size, o.digest) == (40, len(SNAP.app), digest_of(SNAP.app))
    node.step(SnapshotRequest(2, 3, 40, 1000, 100))
    (chunk,) = of_type(drain(node), SnapshotChunk)
    assert chunk.data == SNAP.app[1000:] and stored.reads == 1


def test_digest_of_stored_bytes_equals_that_of_the_bytes():
    data = bytes(range(256)) * 9000  # over two pieces of a MiB
    assert digest_of(Stored(data)) == digest_of(data)


def test_a_stored_snapshot_is_never_encoded_again():
    with pytest.raises(ValueError, match="stored"):
        encode_snapshot(Snapshot(40, VOTERS, b"", Stored(SNAP.app)))
