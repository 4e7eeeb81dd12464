"""A configuration change in the client session: sent at most once (nothing dedups a change),
so a lost answer makes it Indeterminate, while a node that said Unavailable did nothing and the
change goes on to the next node."""

from __future__ import annotations

import random

from paxctl.client.errors import Indeterminate
from paxctl.client.session import ClientSession
from paxctl.client.session_types import CallFailed, Completed, Connect, Send
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import Failed, Hello, MembersRequest, Ok, ReconfigRequest
from paxctl.statemachine.errors import ReconfigRefused

CHANGE = ReconfigRequest(0, "remove", 3, proof=b"p" * 32)


def ready_session():
    s = ClientSession(["a:1", "b:2"], rng=random.Random(1), new_secret=lambda: b"s" * 32)
    return s


def of(outs, kind):
    return [o for o in outs if isinstance(o, kind)]


def connect(s, now):
    (c,) = of(s.take(), Connect)
    s.connected(now, c.conn)
    (hello,) = [o.request for o in of(s.take(), Send)]
    assert isinstance(hello, Hello)
    s.frame(now, c.conn, Ok(hello.xid, 0, {"node": 1}))
    return c.conn, [o.request for o in of(s.take(), Send)]


def test_a_change_whose_connection_is_lost_is_indeterminate_and_not_resent():
    s = ready_session()
    call = s.reconfigure(0, CHANGE, 10_000)
    conn, (req,) = connect(s, 0)
    assert isinstance(req, ReconfigRequest) and req.node == 3
    s.connection_lost(5, conn)
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == call and isinstance(failed.error, Indeterminate)
    assert "may or may not have been made" in str(failed.error)


def test_a_change_a_node_could_not_take_goes_on_to_the_next_node():
    s = ready_session()
    call = s.reconfigure(0, CHANGE, 10_000)
    conn, (req,) = connect(s, 0)
    s.frame(1, conn, Failed(req.xid, 0, ErrorCode.UNAVAILABLE, "overloaded"))
    assert not of(s.take(), CallFailed)
    s.tick(1000)  # the reconnect is due
    _, (again,) = connect(s, 1000)
    assert again.node == 3
    s.frame(1001, 2, Ok(again.xid, 0, {"epoch": 9}))
    assert of(s.take(), Completed) == [Completed(call, {"epoch": 9})]


def test_a_refused_change_raises_the_reason():
    s = ready_session()
    call = s.reconfigure(0, CHANGE, 10_000)
    conn, (req,) = connect(s, 0)
    s.frame(1, conn, Failed(req.xid, 0, ErrorCode.RECONFIG_REFUSED, "a change is in flight"))
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == call and isinstance(failed.error, ReconfigRefused)


def test_reading_the_configuration_is_an_ordinary_retried_read():
    s = ready_session()
    call = s.members(0, 10_000)
    conn, (req,) = connect(s, 0)
    assert isinstance(req, MembersRequest)
    s.connection_lost(5, conn)
    assert not of(s.take(), CallFailed)  # resent on the next connection
    s.tick(1000)
    _, (again,) = connect(s, 1000)
    s.frame(1001, 2, Ok(again.xid, 0, {"epoch": 0}))
    assert of(s.take(), Completed) == [Completed(call, {"epoch": 0})]
