"""A leader killed with writes in flight: its followers notice at once when their connection to
it closes (``NodeEngine.peer_lost``), elect another through pre-vote and phase 1, and hand the
writes they had forwarded to the dead one to the new one themselves, so a client waiting on a
follower is answered without resending after its attempt timeout.

Three real ``NodeEngine``s on ``FuzzCluster``'s in-memory network (test_engine_leaderless.py's
``CutCluster``): messages to or from the killed leader are lost.
"""

from __future__ import annotations

from test_engine_leaderless import CutCluster

from paxctl.protocol.messages import Ok, OpenSessionRequest


def _forwarded_then_killed() -> tuple[CutCluster, int, int]:
    """A client's write on the survivor, forwarded to the leader, which is then killed
    before it could propose it: (cluster, connection, xid)."""
    c = CutCluster()
    conn = c.client_conn()
    c.dead = {c.leader}
    xid = c.next_xid()
    assert c.ask(conn, OpenSessionRequest(xid, 1, 5000)) is None  # lost with the leader
    return c, conn, xid


def _answered(c: CutCluster, conn: int, xid: int) -> bool:
    return any(isinstance(f, Ok) and f.xid == xid for f in c.conns[conn].frames)


def test_a_write_forwarded_to_a_killed_leader_is_answered_by_the_next_one() -> None:
    c, conn, xid = _forwarded_then_killed()
    survivors = [n for n in c.engines if n != c.leader]
    c.tick_until(lambda: any(c.engines[n].node.leader_ready for n in survivors))
    c.tick_until(lambda: _answered(c, conn, xid), limit=20)  # no resend by the client
    for n in survivors:  # applied once: one session opened
        assert len(c.engines[n].machine.sessions()) == 1


def test_a_closed_connection_to_the_leader_elects_the_next_within_a_few_ticks() -> None:
    c, conn, xid = _forwarded_then_killed()
    survivors = [n for n in c.engines if n != c.leader]
    node = c.engines[c.survivor].node
    for n in survivors:
        c.run(n, c.engines[n].peer_lost, c.leader)
    c.settle()
    ticks = 0
    while not _answered(c, conn, xid):
        c.tick()
        ticks += 1
        assert ticks < node.config.election_ticks, "waited for a full election timeout"
    assert all(c.engines[n].node.counters["leader_links_lost"] == 1 for n in survivors)
