"""Fuzzing the client request handlers: node engines fed random sequences of typed requests.

Each example opens and closes connections to a one-node or a three-node cluster of real
``NodeEngine``s, and sends random requests of every kind the protocol has (read from the
``Request`` union, so kinds and fields added later are sent too): hellos with and without a
session and with watches, session opens and closes, writes of every operation, reads, watches,
unwatches, syncs, pings, status; some as valid requests, some structurally mutated on the wire.
Ticks and Ready-loop passes are interleaved at random, so requests share passes as they do
when they arrive in one event-loop turn.

What must hold (besides ``FuzzCluster``'s checks on every output): nothing raises; a request
answered at once changed no replica (a refusal, a cached retry, a read); once the cluster has
settled and ticked, every request on a connection still open has had exactly one answer, unless
it waits by design for a zxid not reached; and the replicas agree with themselves and each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fuzz_cluster import FuzzCluster
from fuzzing import REQUEST_KINDS, client_derive, fuzz, mutated, pack, unpack
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from paxctl.core.codec import MAX_UINT
from paxctl.protocol.codec import encode_request
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    ReadRequest,
    Request,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.server.requests import Frame
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.ops import TEMP_CLIENT_BIT

ACTIONS = ["request"] * 9 + ["mutated", "open", "close", "tick", "process", "settle", "settle"]
uints = st.one_of(st.integers(0, 8), st.sampled_from([2**31, 2**62, MAX_UINT]))


class Context:
    """The example being run, read while values are drawn: the strategies below are built once
    (building them per draw costs more than running the engines), and pick from the cluster's
    state (client ids, seqs, zxids it has seen) when hypothesis draws from them."""

    cluster: FuzzCluster
    conn: int = 0

    def clients(self) -> list[int]:
        sessions = [s for s in self.cluster.seen.get("session", []) if type(s) is int]
        return [TEMP_CLIENT_BIT | 1, TEMP_CLIENT_BIT | 2, *sessions]

    def seq(self, delta: int) -> int:
        client = self.cluster.conns[self.conn].client
        last = self.cluster.seqs.get(client, 0) if client is not None else 0
        return max(1, last + delta)

    def zxid(self, which: str) -> int:
        engine = self.cluster.engines[self.cluster.conns[self.conn].node]
        now, slot = engine.replica.applied_zxid, engine.node.learner.applied
        return {
            "now": now,
            "next": now + 1,
            "slot": zxid_of(slot + 1, 0),
            "ahead": zxid_of(slot + 3, 0),
        }[which]


CTX = Context()


def pick(values: Callable[[], list[int]]) -> SearchStrategy[int]:
    return st.integers(0, 15).map(lambda i: values()[i % len(values())])


zxids = st.one_of(
    st.just(0), st.sampled_from(["now", "next", "slot", "ahead"]).map(CTX.zxid), uints
)
derive = client_derive(
    xid=st.just(None).map(lambda _: CTX.cluster.next_xid()),
    client=st.one_of(pick(CTX.clients), pick(CTX.clients), uints),
    seq=st.one_of(st.sampled_from([1, 1, 1, 0, -1]).map(CTX.seq), uints),
    wid=st.integers(0, 3),
    after=zxids,
    min_zxid=zxids,
    timeout_ms=st.one_of(st.sampled_from([1, 50, 10_000]), uints),
)
derive.by_field[(ReadRequest, "session")] = st.one_of(pick(CTX.clients), uints)
derive.echo = lambda: CTX.cluster.seen
#: Each request kind's strategy, built once.
REQUESTS = {kind: derive.build(kind) for kind in REQUEST_KINDS}
#: Writes and reads are what a client mostly sends; every kind is sent.
KINDS = [*REQUEST_KINDS, WriteRequest, WriteRequest, WriteRequest, ReadRequest]


def answered_now(outputs: list[Any], number: int, xid: int) -> bool:
    return any(
        isinstance(o, Frame)
        and o.conn == number
        and isinstance(o.frame, Ok | Failed)
        and o.frame.xid == xid
        for o in outputs
    )


def step(cluster: FuzzCluster, data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(ACTIONS), label="action")
    open_conns = [n for n, c in cluster.conns.items() if c.open]
    if action == "open" or (action in ("request", "mutated", "close") and not open_conns):
        cluster.open(data.draw(st.sampled_from(sorted(cluster.engines)), label="node"))
    elif action == "close":
        cluster.close(data.draw(st.sampled_from(open_conns), label="conn"))
    elif action == "tick":
        cluster.tick(data.draw(st.integers(1, 3), label="ticks"))
    elif action == "process":
        cluster.process(data.draw(st.sampled_from(sorted(cluster.engines)), label="node"))
    elif action == "settle":
        cluster.settle()
    else:
        number = data.draw(st.sampled_from(open_conns), label="conn")
        CTX.conn = number
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        if cluster.conns[number].client is None and data.draw(st.booleans(), label="hello"):
            kind = Hello  # a connection says hello first (but not always)
        if kind is Hello and data.draw(st.booleans(), label="valid hello"):
            # Half of the hellos prove the temporary id they name (a random one rarely does).
            secret = data.draw(st.binary(min_size=16, max_size=64), label="secret")
            req: Request = Hello(cluster.next_xid(), temporary_id(secret), secret=secret)
        else:
            req = data.draw(REQUESTS[kind], label="request")
        payload = encode_request(req)
        if action == "mutated":
            payload = pack(data.draw(mutated(unpack(payload)), label="mutated"))
        was_settled, before = cluster.settled, cluster.digests()
        fate, outputs = cluster.send(number, payload)
        event(f"{action} {type(req).__name__}: {fate}")
        if (
            was_settled
            and fate in ("request", "rejected")
            and answered_now(outputs, number, req.xid)
        ):
            # Answered before any Ready-loop pass: it proposed nothing, so it changes nothing.
            cluster.settle()
            assert cluster.digests() == before, f"{req} was refused yet changed a replica"


def run(cluster: FuzzCluster, data: st.DataObject, steps: int) -> None:
    CTX.cluster = cluster
    cluster.elect()
    cluster.settle()
    for _ in range(steps):
        step(cluster, data)
    cluster.settle()
    cluster.tick(30)  # pings are confirmed, forwarded writes committed, reads served
    for conn in cluster.conns.values():
        for frame in conn.frames:
            if isinstance(frame, Failed):
                event(f"failed: {frame.code}")
            elif isinstance(frame, Ok):
                event("ok")
    left = cluster.unanswered()
    assert not left, f"never answered: {left}"
    cluster.check_replicas()


@fuzz(40)
@given(st.data(), st.integers(1, 40))
def test_one_node_answers_every_request_once_and_stays_consistent(data, steps):
    run(FuzzCluster(1, snapshot_every=data.draw(st.sampled_from([0, 3]))), data, steps)


@fuzz(15)
@given(st.data(), st.integers(1, 40))
def test_three_nodes_answer_every_request_once_and_stay_consistent(data, steps):
    run(FuzzCluster(3, seed=data.draw(st.integers(1, 5))), data, steps)


# ---------------------------------------------------------------------------- found by fuzzing


def test_a_reused_seq_in_flight_is_answered():
    """Found by fuzzing: a request reusing the (client, seq) of one still in flight on the same
    connection took over its pending answer, so the first was never answered. Now the second
    is refused at once and the first keeps its answer."""
    cluster = FuzzCluster(1)
    cluster.elect()
    number = cluster.open(1)
    secret = b"a reused seq...."
    cluster.send(
        number, encode_request(Hello(cluster.next_xid(), temporary_id(secret), secret=secret))
    )
    cluster.settle()
    # Two requests with seq 1 before the node's next pass (e.g. in one read from the socket).
    cluster.send(number, encode_request(CloseSessionRequest(cluster.next_xid(), 1)))
    reuse = OpenSessionRequest(cluster.next_xid(), 1, 50)
    assert cluster.send(number, encode_request(reuse))[0] == "request"
    cluster.settle()
    cluster.tick(5)
    assert cluster.unanswered() == []
