"""A node's client port proves who a connection speaks for (issue 14): a hello resuming a session
must carry the secret it was opened with, a hello without one speaks under the temporary id its
own secret derives, and a ``seq`` far ahead of the client's last is refused before the log.

The engine alone, sans I/O: the same harness as test_engine.py."""

from __future__ import annotations

from test_engine import CLIENT, OTHER, OTHER_SECRET, SECRET, Harness
from test_engine_waiting import LagCluster

from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    Hello,
    Ok,
    OpenSessionRequest,
    Ping,
    ReadKind,
    ReadRequest,
    WriteRequest,
)
from paxctl.protocol.secrets import session_hash, temporary_id
from paxctl.statemachine.machine import MAX_SEQ_AHEAD
from paxctl.statemachine.ops import Create

THIRD_SECRET = b"a third client's secret, unknown"


def failed(h: Harness, conn: int, xid: int, code: ErrorCode) -> Failed:
    reply = h.reply(conn, xid)
    assert isinstance(reply, Failed) and reply.code == code, reply
    return reply


def victim(h: Harness) -> int:
    """A session on connection 1 with an ephemeral; returns its id."""
    h.lead()
    session = h.session(1)
    xid = h.request(1, lambda x: WriteRequest(x, 2, Create("/eph", b"", ephemeral=True)))
    assert isinstance(h.reply(1, xid), Ok)
    return session


def victim_writes_on(h: Harness, seq: int, path: str) -> None:
    xid = h.request(1, lambda x: WriteRequest(x, seq, Create(path, b"")))
    assert h.reply(1, xid) == Ok(xid, h.engine.replica.applied_zxid, path)


def test_a_hello_with_a_victims_session_id_and_another_secret_is_refused_and_changes_nothing():
    h = Harness()
    session = victim(h)
    h.engine.replica.keeper.relay.take()  # the victim's own heartbeats so far
    h.engine.connection_opened(2)
    xid = h.request(2, lambda x: Hello(x, session, True, secret=OTHER_SECRET))
    reply = failed(h, 2, xid, ErrorCode.AUTH_FAILED)
    assert "another secret" in reply.message and OTHER_SECRET.hex() not in reply.message
    # The connection speaks for nobody: a close or a ping is refused as before any hello.
    xid = h.request(2, lambda x: CloseSessionRequest(x, 3))
    failed(h, 2, xid, ErrorCode.BAD_ARGUMENTS)
    xid = h.request(2, lambda x: Ping(x))
    failed(h, 2, xid, ErrorCode.BAD_ARGUMENTS)
    # The session is untouched: open, its ephemeral there, not even heartbeaten by the attempt.
    machine = h.engine.replica.machine
    assert machine.has_session(session) and machine.tree.ephemerals(session) == ["/eph"]
    assert h.engine.replica.keeper.relay.take() is None
    victim_writes_on(h, 3, "/still-mine")
    assert h.engine.replica.keeper.relay.take() is not None  # the victim's own request is one


def test_the_right_secret_resumes_the_session_on_another_connection():
    h = Harness()
    session = victim(h)
    h.engine.connection_opened(2)
    xid = h.request(2, lambda x: Hello(x, session, True, secret=SECRET))
    assert isinstance(h.reply(2, xid), Ok)
    xid = h.request(2, lambda x: WriteRequest(x, 3, Create("/moved", b"")))
    assert isinstance(h.reply(2, xid), Ok)
    assert h.engine.replica.machine.tree.exists("/moved") is not None


def test_a_sessionless_hello_cannot_name_a_session_or_another_clients_id():
    h = Harness()
    session = victim(h)
    h.engine.connection_opened(2)
    for claimed in (session, CLIENT, temporary_id(SECRET) ^ 1):
        xid = h.request(2, lambda x, c=claimed: Hello(x, c, secret=THIRD_SECRET))
        reply = failed(h, 2, xid, ErrorCode.BAD_ARGUMENTS)
        assert "derives" in reply.message
        xid = h.request(2, lambda x: WriteRequest(x, 9, Create("/hijack", b"")))
        failed(h, 2, xid, ErrorCode.BAD_ARGUMENTS)  # still no client: say hello first
    assert h.engine.replica.machine.tree.exists("/hijack") is None
    # Its own derived id is fine, and writes under it need a session of its own.
    xid = h.request(2, lambda x: Hello(x, temporary_id(THIRD_SECRET), secret=THIRD_SECRET))
    assert isinstance(h.reply(2, xid), Ok)
    xid = h.request(2, lambda x: WriteRequest(x, 1, Create("/hijack", b"")))
    failed(h, 2, xid, ErrorCode.SESSION_EXPIRED)
    victim_writes_on(h, 3, "/after")


def test_a_resume_waits_for_the_sessions_open_and_is_then_checked_not_trusted():
    """A node that has not applied a session's open yet cannot know its secret: the hello waits
    until it has (the id is the open's zxid), then is checked like any other. (A hello naming
    an id whose open no leader chose is refused at once: test_engine_waiting.py.)"""
    c = LagCluster()
    c.holding = True  # the follower c.lag hears nothing of the open
    conn = c.open(c.leader)
    c.ask(conn, lambda x: Hello(x, CLIENT, secret=SECRET))
    granted = c.answer(conn, c.ask(conn, lambda x: OpenSessionRequest(x, 1, 5000)))
    assert isinstance(granted, Ok)
    session = int(granted.value["session"])
    thief, owner = c.open(c.lag), c.open(c.lag)
    stolen = c.ask(thief, lambda x: Hello(x, session, True, secret=OTHER_SECRET))
    mine = c.ask(owner, lambda x: Hello(x, session, True, secret=SECRET))
    assert c.answer(thief, stolen) is None and c.answer(owner, mine) is None  # they wait
    c.release()
    refused = c.answer(thief, stolen)
    assert isinstance(refused, Failed) and refused.code == ErrorCode.AUTH_FAILED
    assert isinstance(c.answer(owner, mine), Ok)


def test_a_resume_of_an_unknown_session_is_expired():
    h = Harness()
    session = victim(h)
    h.engine.connection_opened(2)
    xid = h.request(2, lambda x: Hello(x, session + 1, True, secret=SECRET))
    failed(h, 2, xid, ErrorCode.SESSION_EXPIRED)


def test_the_session_opened_keeps_the_hash_of_the_connections_secret():
    h = Harness()
    session = victim(h)
    machine = h.engine.replica.machine
    assert machine.session_proven(session, session_hash(SECRET))
    assert not machine.session_proven(session, session_hash(OTHER_SECRET))
    xid = h.request(1, lambda x: ReadRequest(x, ReadKind.SESSIONS))
    listing = h.reply(1, xid)
    assert isinstance(listing, Ok)
    assert listing.value == [{"session": session, "timeout_ms": 5000, "ephemerals": 1}]


def test_a_seq_far_ahead_is_refused_before_the_log_and_later_writes_stay_definite():
    h = Harness()
    session = victim(h)
    before = len(h.proposals.commands)
    for seq in (2**63 - 1, 2 + MAX_SEQ_AHEAD + 1):
        xid = h.request(1, lambda x, s=seq: WriteRequest(x, s, Create("/far", b"")))
        reply = failed(h, 1, xid, ErrorCode.BAD_ARGUMENTS)
        assert f"more than {MAX_SEQ_AHEAD} ahead" in reply.message
    assert len(h.proposals.commands) == before  # nothing reached the log
    assert h.engine.replica.machine.tree.exists("/far") is None
    victim_writes_on(h, 3, "/definite")
    victim_writes_on(h, 2 + MAX_SEQ_AHEAD, "/at-the-edge")  # the window counts from the last
    assert h.engine.replica.machine.has_session(session)


def test_other_is_a_temporary_id_of_its_secret():
    assert OTHER == temporary_id(OTHER_SECRET) != CLIENT


def test_a_refused_secret_exits_as_a_lost_session():
    from paxctl.cli.exits import BY_ERROR_CODE, SESSION_LOST

    assert BY_ERROR_CODE[ErrorCode.AUTH_FAILED] == SESSION_LOST == 8
