"""Hellos and local reads naming a zxid a node has not applied: they wait only for slots that
exist, so a lagging follower serves an honest client once it catches up, and a zxid or session
id no node ever reached is refused (on a quiet cluster it used to wait for ever: found by the
client-request fuzz).

Three real ``NodeEngine``s on ``FuzzCluster``'s in-memory network; one follower can be made to
lag by holding back what tells it of new slots, while it still talks to the leader.
"""

from __future__ import annotations

from typing import Any

from fuzz_cluster import FuzzCluster

from paxctl.core.messages import Accept, CatchupReply, Message, SnapshotChunk, SnapshotOffer
from paxctl.protocol.codec import encode_request
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    ReadKind,
    ReadRequest,
    Request,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.server.requests import MAX_WAITERS_PER_CONNECTION
from paxctl.server.zxid import slot_of, zxid_of
from paxctl.statemachine.ops import Create

SECRET = b"a client of test_engine_waiting."
CLIENT = temporary_id(SECRET)
NEWS = (Accept, CatchupReply, SnapshotOffer, SnapshotChunk)  # what tells a node of new slots


class LagCluster(FuzzCluster):
    """While ``holding``, node ``lag`` hears of no new slot (it still hears read-index replies,
    so it can ask the leader whether a slot exists); ``release`` hands it what was held."""

    def __init__(self) -> None:
        super().__init__(3)
        self.holding = False
        self.held: list[Message] = []
        self.leader = self.elect()
        self.settle()
        self.lag = max(n for n in self.engines if n != self.leader)

    def receive(self, msg: Message) -> None:
        if self.holding and msg.to == self.lag and isinstance(msg, NEWS):
            self.held.append(msg)
        else:
            super().receive(msg)

    def release(self) -> None:
        self.holding = False
        self.network.extend(self.held)
        self.held = []
        self.settle()
        self.tick(3)  # a heartbeat: it sees the commit index and catches up

    def ask(self, conn: int, make: Any) -> int:
        """Send ``make(xid)`` on ``conn`` and settle; returns the xid."""
        req: Request = make(self.next_xid())
        self.send(conn, encode_request(req))
        self.settle()
        return req.xid

    def answer(self, conn: int, xid: int) -> Ok | Failed | None:
        found = [f for f in self.conns[conn].frames if isinstance(f, Ok | Failed) and f.xid == xid]
        assert len(found) <= 1, found
        return found[0] if found else None

    def session_with_writes(self, writes: int = 3) -> tuple[int, int]:
        """A session opened on the leader, then ``writes`` writes held from the lagging node;
        returns (session, the last zxid the client saw)."""
        conn = self.open(self.leader)
        self.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET))
        granted = self.answer(conn, self.ask(conn, lambda x: OpenSessionRequest(x, 1, 5000)))
        assert isinstance(granted, Ok)
        self.holding = True
        last = None
        for i in range(writes):
            last = self.answer(
                conn, self.ask(conn, lambda x, i=i: WriteRequest(x, 2 + i, Create(f"/w{i}", b"")))
            )
            assert isinstance(last, Ok)
        assert last is not None
        return int(granted.value["session"]), last.zxid

    def waiting(self) -> int:
        return self.engines[self.lag].driver.waiting


def test_a_client_resuming_on_a_lagging_follower_is_served_once_it_catches_up():
    c = LagCluster()
    session, seen = c.session_with_writes()
    follower = c.engines[c.lag]
    assert c.engines[c.leader].node.learner.applied >= slot_of(seen)
    assert follower.driver.known_chosen() < slot_of(seen)  # it does not even know the slot
    conn = c.open(c.lag)
    hello = c.ask(conn, lambda x: Hello(x, session, session=True, after=seen, secret=SECRET))
    read = c.ask(conn, lambda x: ReadRequest(x, ReadKind.GET, "/w2", local=True, min_zxid=seen))
    assert c.answer(conn, hello) is None and c.answer(conn, read) is None  # they wait
    assert c.waiting() == 2
    c.release()
    greeted = c.answer(conn, hello)
    assert isinstance(greeted, Ok) and greeted.zxid >= seen
    got = c.answer(conn, read)
    assert isinstance(got, Ok) and got.value["data"] == b""
    assert c.waiting() == 0


def test_a_session_or_zxid_no_node_reached_is_refused_on_a_quiet_cluster():
    """Before: the hello (a made-up session id 2**31, whose open would be slot 32768) and the
    local read were parked until their slot was applied, which on a quiet cluster is never."""
    c = LagCluster()
    c.settle()
    made_up = 2**31
    ahead = zxid_of(c.engines[c.leader].node.learner.applied + 3, 0)
    for node in sorted(c.engines):  # the leader and both followers
        conn = c.open(node)
        xid = c.ask(conn, lambda x: Hello(x, made_up, session=True, secret=SECRET))
        refused = c.answer(conn, xid)
        assert isinstance(refused, Failed) and refused.code == ErrorCode.SESSION_EXPIRED
        assert f"session {made_up:#x} unknown" in refused.message
        xid = c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=ahead))
        refused = c.answer(conn, xid)
        assert isinstance(refused, Failed) and refused.code == ErrorCode.BAD_ARGUMENTS
        assert f"zxid {ahead:#x} is ahead of the cluster" in refused.message
        c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET))  # the connection still works
        xid = c.ask(conn, lambda x: ReadRequest(x, ReadKind.GET, "/", local=True, min_zxid=ahead))
        refused = c.answer(conn, xid)
        assert isinstance(refused, Failed) and refused.code == ErrorCode.BAD_ARGUMENTS
        assert "is ahead of the cluster" in refused.message
        assert c.engines[node].driver.waiting == 0
    c.tick(30)
    assert c.unanswered() == []


def test_a_closed_connections_waiters_are_dropped():
    c = LagCluster()
    _, seen = c.session_with_writes()
    conn = c.open(c.lag)
    c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=seen))
    assert c.waiting() == 1
    c.close(conn)
    c.process(c.lag)
    assert c.waiting() == 0


def test_a_flood_of_waiting_reads_is_capped_per_connection():
    c = LagCluster()
    _, seen = c.session_with_writes()
    conn = c.open(c.lag)
    c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET))
    read = ReadRequest
    xids = [
        c.ask(conn, lambda x: read(x, ReadKind.EXISTS, "/", local=True, min_zxid=seen))
        for _ in range(MAX_WAITERS_PER_CONNECTION + 5)
    ]
    assert c.waiting() == MAX_WAITERS_PER_CONNECTION
    for xid in xids[MAX_WAITERS_PER_CONNECTION:]:
        refused = c.answer(conn, xid)
        assert isinstance(refused, Failed) and refused.code == ErrorCode.UNAVAILABLE
        assert f"at most {MAX_WAITERS_PER_CONNECTION} hellos and reads" in refused.message
    # Another connection has its own budget.
    other = c.open(c.lag)
    c.ask(other, lambda x: Hello(x, CLIENT, secret=SECRET))
    xid = c.ask(other, lambda x: read(x, ReadKind.EXISTS, "/", local=True, min_zxid=seen))
    assert c.answer(other, xid) is None
    # Once the slots are applied, every waiter is answered and the budget is back.
    c.release()
    assert all(isinstance(c.answer(conn, x), Ok) for x in xids[:MAX_WAITERS_PER_CONNECTION])
    assert isinstance(c.answer(other, xid), Ok)
    assert c.waiting() == 0
    assert c.engines[c.lag].driver.waiting_of(conn) == 0


def test_a_second_hello_while_one_waits_is_refused_and_the_first_is_served():
    c = LagCluster()
    _, seen = c.session_with_writes()
    conn = c.open(c.lag)
    first = c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=seen))
    second = c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=seen))
    refused = c.answer(conn, second)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.BAD_ARGUMENTS
    assert "a hello is already waiting" in refused.message
    assert c.answer(conn, first) is None and c.waiting() == 1
    c.release()
    assert isinstance(c.answer(conn, first), Ok)
    # Answered: the connection may say hello again (as a client with many watches does).
    again = c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=seen))
    assert isinstance(c.answer(conn, again), Ok)


def test_a_refused_hello_lets_the_connection_say_hello_again():
    """A hello refused after asking the leader clears the one-hello-at-a-time mark."""
    c = LagCluster()
    conn = c.open(c.lag)
    ahead = zxid_of(c.engines[c.leader].node.learner.applied + 3, 0)
    xid = c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET, after=ahead))
    assert isinstance(c.answer(conn, xid), Failed)
    assert isinstance(c.answer(conn, c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET))), Ok)
