"""A node that has known no leader for ``LEADERLESS_TIMEOUTS`` election timeouts answers its
clients' writes ``Unavailable`` (nothing was done) instead of holding them until the client gives
up with "outcome unknown": the writes it still held are taken back from its core, so none of them
is ever decided, and new ones are refused at once. Writes that went out to a leader are not
answered so: only that leader's fate can say what became of them.

Three real ``NodeEngine``s on ``FuzzCluster``'s in-memory network; two of them are cut off.
"""

from __future__ import annotations

from fuzz_cluster import FuzzCluster

from paxctl.core.messages import Message
from paxctl.protocol.codec import encode_request
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import Failed, Hello, Ok, OpenSessionRequest, Request
from paxctl.protocol.secrets import temporary_id
from paxctl.server.engine import LEADERLESS_TIMEOUTS

SECRET = b"a client of test_engine_leaderless"
CLIENT = temporary_id(SECRET)


class CutCluster(FuzzCluster):
    """Messages to or from the ``dead`` nodes are lost."""

    def __init__(self) -> None:
        super().__init__(3)
        self.dead: set[int] = set()
        self.leader = self.elect()
        self.settle()
        self.survivor = min(n for n in self.engines if n != self.leader)

    def receive(self, msg: Message) -> None:
        if msg.to not in self.dead and msg.frm not in self.dead:
            super().receive(msg)

    def ask(self, conn: int, req: Request) -> Ok | Failed | None:
        self.send(conn, encode_request(req))
        self.settle()
        frames = self.conns[conn].frames
        found = [f for f in frames if isinstance(f, Ok | Failed) and f.xid == req.xid]
        return found[0] if found else None

    def client_conn(self) -> int:
        conn = self.open(self.survivor)
        assert isinstance(self.ask(conn, Hello(self.next_xid(), CLIENT, secret=SECRET)), Ok)
        return conn

    def tick_until(self, done: object, limit: int = 200) -> None:
        for _ in range(limit):
            if done():  # type: ignore[operator]
                return
            self.tick()
        raise AssertionError("not reached")


def _quorum_lost() -> CutCluster:
    c = CutCluster()
    c.dead = {n for n in c.engines if n != c.survivor}
    return c


def test_a_write_held_with_no_leader_is_withdrawn_and_refused() -> None:
    c = _quorum_lost()
    engine = c.engines[c.survivor]
    c.tick_until(lambda: engine.node.leader is None)
    assert not engine.leaderless  # not for long enough yet
    conn = c.client_conn()
    xid = c.next_xid()
    assert c.ask(conn, OpenSessionRequest(xid, 1, 5000)) is None  # held: a leader may come
    ticks = LEADERLESS_TIMEOUTS * engine.node.config.election_ticks
    c.tick(ticks)
    (refused,) = [f for f in c.conns[conn].frames if isinstance(f, Failed) and f.xid == xid]
    assert refused.code == ErrorCode.UNAVAILABLE and "nothing was done" in refused.message
    # The quorum comes back: the refused write is never decided anywhere.
    c.dead = set()
    c.elect()
    c.tick(20)
    for e in c.engines.values():
        assert not e.machine.is_applied(CLIENT, 1)


def test_a_write_arriving_long_after_the_leader_went_is_refused_at_once() -> None:
    c = _quorum_lost()
    engine = c.engines[c.survivor]
    c.tick_until(lambda: engine.leaderless)
    conn = c.client_conn()
    refused = c.ask(conn, OpenSessionRequest(c.next_xid(), 1, 5000))
    assert isinstance(refused, Failed) and refused.code == ErrorCode.UNAVAILABLE
    # Once a leader is back, the same client's write goes through.
    c.dead = set()
    c.tick_until(lambda: not engine.leaderless and engine.node.leader is not None)
    xid = c.next_xid()
    c.ask(conn, OpenSessionRequest(xid, 1, 5000))
    c.tick_until(lambda: any(isinstance(f, Ok) and f.xid == xid for f in c.conns[conn].frames))


def test_a_write_that_went_out_to_the_leader_is_never_called_undone() -> None:
    """Forwarded to the leader before it vanished: it may yet be chosen, so the node keeps
    quiet about it (the client's own deadline says "outcome unknown")."""
    c = CutCluster()
    engine = c.engines[c.survivor]
    conn = c.client_conn()
    c.dead = {c.leader}  # the forward to the leader is lost...
    xid = c.next_xid()
    assert c.ask(conn, OpenSessionRequest(xid, 1, 5000)) is None
    c.dead = {n for n in c.engines if n != c.survivor}  # ...and no quorum is left
    c.tick_until(lambda: engine.leaderless)
    c.tick(5)
    assert not [f for f in c.conns[conn].frames if isinstance(f, Failed) and f.xid == xid]
