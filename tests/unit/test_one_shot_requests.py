"""One-shot writes end to end in the sans-I/O pieces: the node's request handling (the engine
harness of test_engine.py) and the client session (as test_client_session.py drives it).

A one-shot write is a ``WriteRequest`` carrying ``Once``: one consensus round, no session. The
node proposes it under the temporary id the connection's hello proved, never a session's; a
resend is answered from the cluster's table, not applied again; and the client keeps the
write's ``seq`` and ``after`` on every resend.
"""

from __future__ import annotations

import msgpack
import pytest
from test_client_session import TEMP, connect, of, sent, session
from test_engine import CLIENT, OTHER, OTHER_SECRET, SECRET, Harness

from paxctl.client.errors import Indeterminate
from paxctl.client.session_types import CallFailed, Completed
from paxctl.protocol.codec import BadRequest, decode_request
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import Failed, Hello, Ok, WriteRequest
from paxctl.statemachine.ops import FIRST_CLIENT_ID, Create, Once, Put, decode_command


def hello(h: Harness, conn: int, secret: bytes = SECRET, client: int = CLIENT) -> None:
    h.engine.connection_opened(conn)
    xid = h.request(conn, lambda x: Hello(x, client, secret=secret))
    assert isinstance(h.reply(conn, xid), Ok)


def proposed(h: Harness) -> list[tuple[int, int, object]]:
    """``(client, seq, op)`` of every client's command the node proposed, in order (the
    leader's own, e.g. its reaper's, left out)."""
    commands = [c for c in h.proposals.commands if c.client >= FIRST_CLIENT_ID]
    return [(c.client, c.seq, decode_command(c.data)[1]) for c in commands]


def test_a_one_shot_write_is_one_command_under_the_connections_temporary_id():
    h = Harness()
    h.lead()
    hello(h, 1)
    before = h.engine.node.learner.commit
    xid = h.request(1, lambda x: WriteRequest(x, 1, Once(0, Put("/k", b"v"))))
    reply = h.reply(1, xid)
    assert isinstance(reply, Ok) and reply.value["version"] == 0
    assert proposed(h) == [(CLIENT, 1, Once(0, Put("/k", b"v")))]  # no open, no close
    assert h.engine.node.learner.commit == before + 1  # one slot: one round
    assert h.engine.replica.machine.sessions() == {}


def test_a_one_shot_write_delivered_twice_is_applied_once_and_answered_alike():
    h = Harness()
    h.lead()
    hello(h, 1)
    op = Once(0, Create("/job-", b"", sequential=True))
    first = h.reply(1, h.request(1, lambda x: WriteRequest(x, 1, op)))
    assert isinstance(first, Ok) and first.value == "/job-0000000000"
    # The answer was lost: the client reconnects (same secret, so same id) and resends.
    hello(h, 2)
    commit = h.engine.node.learner.commit
    again = h.reply(2, h.request(2, lambda x: WriteRequest(x, 1, op)))
    assert isinstance(again, Ok) and again.value == first.value
    assert h.engine.replica.machine.tree.children("/") == ["job-0000000000"]
    assert h.engine.node.learner.commit == commit  # answered from the table, not proposed
    # Another client's seq 1 is its own: applied, not answered with the first one's reply.
    hello(h, 3, OTHER_SECRET, OTHER)
    other = h.reply(3, h.request(3, lambda x: WriteRequest(x, 1, op)))
    assert isinstance(other, Ok) and other.value == "/job-0000000001"


def test_a_connection_with_a_session_cannot_write_one_shot():
    h = Harness()
    h.lead()
    h.session(1)
    count = len(proposed(h))
    xid = h.request(1, lambda x: WriteRequest(x, 2, Once(0, Put("/k", b"v"))))
    reply = h.reply(1, xid)
    assert isinstance(reply, Failed) and reply.code == ErrorCode.BAD_ARGUMENTS
    assert len(proposed(h)) == count and h.engine.replica.machine.tree.exists("/k") is None


def test_a_connection_speaks_only_for_its_own_temporary_id():
    h = Harness()
    h.lead()
    h.engine.connection_opened(1)
    # Naming another client's temporary id without its secret is refused at the hello...
    xid = h.request(1, lambda x: Hello(x, OTHER, secret=SECRET))
    assert isinstance(h.reply(1, xid), Failed)
    # ...so a one-shot write from it is refused as from a connection that said no hello.
    xid = h.request(1, lambda x: WriteRequest(x, 1, Once(0, Put("/k", b"v"))))
    assert isinstance(h.reply(1, xid), Failed) and proposed(h) == []


def test_a_one_shot_ephemeral_is_refused_on_the_wire():
    inner = ["create", "/e", b"", False, False, True, False, 0]
    data = msgpack.packb(["once", 0, inner], use_bin_type=True)
    payload = msgpack.packb({"op": "write", "xid": 4, "seq": 1, "data": data})
    with pytest.raises(BadRequest) as caught:
        decode_request(payload)
    assert caught.value.xid == 4 and caught.value.error.code == "BadArguments"


# ---------------------------------------------------------------------------- the client


def test_the_client_sends_a_one_shot_write_after_its_hello_and_resends_it_unchanged():
    s = session()
    call = s.write_once(0, Put("/k", b"v"), 5000)
    conn, _, outs = connect(s, zxid=70)
    (req,) = sent(outs)
    assert req == WriteRequest(req.xid, 1, Once(70, Put("/k", b"v")))  # after = hello's zxid
    assert s.client_id == TEMP and not s.session
    # The connection breaks before the answer; the next node has applied more.
    s.connection_lost(1, conn)
    s.tick(100)
    _, _, outs = connect(s, now=100, zxid=90)
    (again,) = sent(outs)
    assert again.seq == 1 and again.op == Once(70, Put("/k", b"v"))  # same seq, same after
    s.frame(101, 2, Ok(again.xid, 91, {"version": 0}))
    assert of(s.take(), Completed) == [Completed(call, {"version": 0})]


def test_a_one_shot_write_the_cluster_may_have_forgotten_is_reported_as_unknown():
    s = session()
    call = s.write_once(0, Put("/k", b"v"), 5000)
    conn, _, outs = connect(s, zxid=7)
    (req,) = sent(outs)
    s.frame(1, conn, Failed(req.xid, 9, ErrorCode.INDETERMINATE, "may have been applied"))
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == call and isinstance(failed.error, Indeterminate)


def test_a_client_with_a_session_does_not_write_one_shot():
    from test_client_session import opened

    s, _ = opened()
    with pytest.raises(ValueError):
        s.write_once(0, Put("/k", b"v"))
