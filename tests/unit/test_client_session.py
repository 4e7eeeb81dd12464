"""The client session alone: typed inputs in, typed outputs out, no sockets and no clock.

Each test plays one connection's worth of frames into a ``ClientSession`` and checks what it
asks its driver to do. The asyncio ``Client`` and the simulator drive this same class.
"""

from __future__ import annotations

import random

import pytest

from paxctl.client.errors import Indeterminate, Unavailable
from paxctl.client.session import ClientSession
from paxctl.client.session_types import (
    CallFailed,
    ClientBugs,
    Close,
    Completed,
    Connect,
    Delivered,
    Link,
    Renewed,
    Send,
    SessionState,
    StateChanged,
)
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
    SessionEnded,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.statemachine.errors import NoNode, SessionExpired
from paxctl.statemachine.ops import FIRST_CLIENT_ID, TEMP_CLIENT_BIT, Create, SetData

SECRET = b"first secret of this client!...."  # the client's own: its driver draws it
TEMP = temporary_id(SECRET)  # the id a client opens its session under
CID = FIRST_CLIENT_ID + 1  # the session id the cluster names
GRANTED = {"session": CID, "timeout_ms": 3000}
NO_BUGS = ClientBugs()
SERVERS = ["a:1", "b:2", "c:3"]


def session(bugs=NO_BUGS, **kw) -> ClientSession:
    secrets = iter([SECRET] + [b"later secret %03d of the client" % i for i in range(100)])
    kw.setdefault("session_timeout_ms", 3000)
    return ClientSession(
        SERVERS,
        rng=random.Random(1),
        new_secret=lambda: next(secrets),
        bugs=bugs,
        **kw,
    )


def of(outs, kind):
    return [o for o in outs if isinstance(o, kind)]


def sent(outs):
    return [o.request for o in of(outs, Send)]


def connect(s, now=0.0, zxid=0):
    """Complete the pending connect with an accepted hello: (conn, hello, outputs after it)."""
    (c,) = of(s.take(), Connect)
    s.connected(now, c.conn)
    (hello,) = sent(s.take())
    assert isinstance(hello, Hello)
    s.frame(now, c.conn, Ok(hello.xid, zxid, {"node": 1}))
    return c.conn, hello, s.take()


def opened(now=0.0, **kw):
    """A session with an open session on a ready connection: (session, conn)."""
    s = session(**kw)
    call = s.open_session(now)
    conn, _, outs = connect(s, now)
    (req,) = sent(outs)
    assert isinstance(req, OpenSessionRequest) and req.seq == 1 and req.timeout_ms == 3000
    s.frame(now, conn, Ok(req.xid, 5, GRANTED))
    outs = s.take()
    assert Completed(call, GRANTED) in outs and StateChanged(SessionState.CONNECTED) in outs
    assert s.client_id == s.session_id == CID
    return s, conn


def test_a_call_connects_and_says_hello_first():
    s = session()
    call = s.read(0, ReadKind.GET, "/x", 1000)
    (connect_,) = s.take()
    assert connect_ == Connect(1, s.server)
    s.connected(1, 1)
    (hello,) = sent(s.take())
    assert hello == Hello(1, TEMP, False, 0, (), SECRET)  # no session yet: its temporary id
    assert TEMP >= TEMP_CLIENT_BIT and SECRET.hex() not in repr(hello) and "secret" not in repr(s)
    s.frame(2, 1, Ok(1, 7, {"node": 2}))
    outs = s.take()
    assert Link(True, 1, s.server) in outs
    (read,) = sent(outs)
    assert read == ReadRequest(2, ReadKind.GET, "/x")
    s.frame(3, 1, Ok(2, 8, {"data": b"", "stat": {}}))
    assert of(s.take(), Completed) == [Completed(call, {"data": b"", "stat": {}})]
    assert s.last_zxid == 8 and s.next_deadline() is None


def test_failover_tries_the_servers_in_turn_at_once_then_pauses():
    """The other servers are tried without a pause; once all failed in a row, the client
    waits ``reconnect_ms`` before each attempt (no busy loop against a dead cluster)."""
    s = session(reconnect_ms=50)
    s.read(0, ReadKind.GET, "/x")
    first = s.server
    tried, deadlines = [], []
    for k in range(5):
        (c,) = of(s.take(), Connect)
        tried.append(c.server % len(SERVERS))
        s.connect_failed(k * 100, c.conn)  # a timeout, not a refusal: keep trying
        deadlines.append(s.next_deadline() - k * 100)
        s.tick(s.next_deadline())
    assert tried == [(first + k) % 3 for k in range(5)]
    assert deadlines == [0, 0, 50, 50, 50]


def test_a_lost_connection_moves_to_the_next_server_at_once():
    """The leader a write went to was killed: the write goes to the next node without a
    pause, and a connection that gets ready starts the count of failures afresh."""
    s, conn = opened(reconnect_ms=50)
    s.write(10, Create("/a"))
    (req,) = sent(s.take())
    before = s.server
    s.connection_lost(20, conn)
    s.take()
    assert s.next_deadline() == 20  # no pause: tick now
    s.tick(20)
    (c,) = of(s.take(), Connect)
    assert c.server == before + 1
    s.connect_failed(21, c.conn, "refused")  # that one is dead too: the third, at once
    assert s.next_deadline() == 21
    s.tick(21)
    conn3, _, outs = connect(s, 21)
    (again,) = [r for r in sent(outs) if isinstance(r, WriteRequest)]
    assert again.seq == req.seq and s.server == before + 2
    s.connection_lost(30, conn3)  # ready once: the count starts again, no pause
    assert s.next_deadline() == 30


def test_unavailable_moves_to_the_next_server_at_once():
    """A node with no leader to give a write to says so; the next node is asked now."""
    s, conn = opened(reconnect_ms=50)
    s.write(10, Create("/a"))
    (req,) = sent(s.take())
    s.frame(20, conn, Failed(req.xid, 30, ErrorCode.UNAVAILABLE, "no leader"))
    s.take()
    assert s.next_deadline() == 20
    s.tick(20)
    assert len(of(s.take(), Connect)) == 1


def test_a_write_is_resent_with_the_same_seq_after_a_failover():
    s, conn = opened()
    call = s.write(10, Create("/a", b"x"))
    (first,) = sent(s.take())
    assert isinstance(first, WriteRequest) and first.seq == 2
    s.connection_lost(20, conn)
    outs = s.take()
    assert Close(conn, "connection lost") in outs
    assert StateChanged(SessionState.SUSPENDED) in outs
    s.tick(100)
    conn2, hello, outs = connect(s, 100)
    assert conn2 != conn and hello.session and hello.client == CID and hello.after == 5
    (again,) = [r for r in sent(outs) if isinstance(r, WriteRequest)]
    assert (again.seq, again.op) == (first.seq, first.op)
    s.frame(110, conn2, Ok(again.xid, 9, "/a"))
    assert Completed(call, "/a") in s.take()
    s.write(120, SetData("/a", b"y"))
    (nxt,) = sent(s.take())
    assert nxt.seq == 3


def test_the_session_is_resumed_with_its_secret_and_a_new_one_follows_its_end():
    s, conn = opened()
    s.connection_lost(20, conn)
    s.tick(100)
    _, hello, _ = connect(s, 100)
    assert (hello.client, hello.session, hello.secret) == (CID, True, SECRET)
    s.frame(110, s.conn, SessionEnded(120, CID))
    s.watch(130, s.new_watch("/w", WatchMode.PERSISTENT), None)  # something to reconnect for
    s.tick(200)
    _, hello, _ = connect(s, 200)
    assert not hello.session and hello.secret not in (b"", SECRET)
    assert hello.client == temporary_id(hello.secret) != TEMP  # the old id opened a session


def test_a_resume_refused_for_its_secret_loses_the_session_and_goes_on_without_it():
    """AuthFailed never happens to an honest client, but if it did (a bug), retrying the same
    hello for ever would help nobody: the session is as good as lost to this client."""
    s, conn = opened()
    call = s.write(10, Create("/a"))
    s.connection_lost(20, conn)
    s.tick(100)
    (c,) = of(s.take(), Connect)
    s.connected(100, c.conn)
    (hello,) = sent(s.take())
    assert hello.session and hello.secret == SECRET
    s.frame(110, c.conn, Failed(hello.xid, 50, ErrorCode.AUTH_FAILED, "another secret"))
    outs = s.take()
    assert StateChanged(SessionState.LOST) in outs
    (failed,) = of(outs, CallFailed)
    assert failed.call == call and isinstance(failed.error, SessionExpired)
    (again,) = sent(outs)
    assert isinstance(again, Hello) and not again.session and again.secret != SECRET
    assert again.client == temporary_id(again.secret)


def test_a_write_times_out_on_one_server_and_moves_on():
    s, conn = opened(attempt_timeout_ms=700)
    s.write(10, Create("/a"))
    assert s.next_deadline() == 710
    s.tick(710)
    outs = s.take()
    assert Close(conn, "no reply in time") in outs


def test_writes_of_a_lost_session_are_never_resent():
    s, conn = opened()
    call = s.write(10, Create("/a"))
    s.take()
    s.frame(20, conn, SessionEnded(30, CID))
    outs = s.take()
    (failed,) = of(outs, CallFailed)
    assert failed.call == call and isinstance(failed.error, SessionExpired)
    assert "outcome is unknown" in str(failed.error)
    assert StateChanged(SessionState.LOST) in outs
    assert Close(conn, "the node pushed its end") in outs
    assert not s.session and s.client_id != CID and s.seq == 0
    s.watch(30, s.new_watch("/w", WatchMode.PERSISTENT), None)  # something to reconnect for
    s.tick(100)
    _, hello, outs = connect(s, 100)
    assert hello.client == s.client_id and not hello.session
    assert not any(isinstance(r, WriteRequest) for r in sent(outs))


def test_a_write_answered_session_expired_loses_the_session():
    s, conn = opened()
    call = s.write(10, Create("/a"))
    (req,) = sent(s.take())
    s.frame(20, conn, Failed(req.xid, 30, ErrorCode.SESSION_EXPIRED, "gone"))
    outs = s.take()
    assert of(outs, CallFailed)[0].call == call
    assert StateChanged(SessionState.LOST) in outs and s.epoch == 1


def test_errors_come_back_as_exceptions():
    s, conn = opened()
    call = s.write(10, Create("/a/b"))
    (req,) = sent(s.take())
    s.frame(20, conn, Failed(req.xid, 30, ErrorCode.NO_NODE, "no node /a"))
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == call and isinstance(failed.error, NoNode)


def test_unavailable_is_retried_on_the_next_server():
    s, conn = opened()
    s.write(10, Create("/a"))
    (req,) = sent(s.take())
    s.frame(20, conn, Failed(req.xid, 30, ErrorCode.UNAVAILABLE, "no leader"))
    outs = s.take()
    assert not of(outs, CallFailed) and of(outs, Close)


def _write_refused_everywhere(lost_first: bool) -> CallFailed:
    """A write (1 s deadline) answered ``Unavailable`` by every node it reaches; with
    ``lost_first`` its first attempt's connection broke before any answer."""
    s, conn = opened(attempt_timeout_ms=5000, reconnect_ms=10)
    call = s.write(0, Create("/a"), 1000)
    (req,) = sent(s.take())
    if lost_first:
        s.connection_lost(5, conn)
    else:
        s.frame(5, conn, Failed(req.xid, 30, ErrorCode.UNAVAILABLE, "no leader"))
    now, failed, refusals = 5.0, [], 0
    while not failed and now <= 1000:
        now += 50
        s.tick(now)
        outs = s.take()
        for c in of(outs, Connect):
            s.connected(now, c.conn)
            (hello,) = sent(s.take())
            s.frame(now, c.conn, Ok(hello.xid, 30, {"node": 2}))
            for r in sent(s.take()):
                if isinstance(r, WriteRequest):
                    refusals += 1
                    s.frame(now, c.conn, Failed(r.xid, 30, ErrorCode.UNAVAILABLE, "no leader"))
            outs += s.take()
        failed += [f for f in of(outs, CallFailed) if f.call == call]
    assert refusals >= 2 and len(failed) == 1  # retried on other nodes until its deadline
    return failed[0]


def test_a_write_every_node_refused_is_unavailable_at_its_deadline():
    """Each node said it did nothing with it: not done, for certain (exit 5, not 6)."""
    assert isinstance(_write_refused_everywhere(lost_first=False).error, Unavailable)


def test_a_refusal_after_an_unanswered_attempt_leaves_the_write_indeterminate():
    """The first node may still decide the attempt whose answer was lost: later refusals by
    other nodes cannot make the write "not done"."""
    assert isinstance(_write_refused_everywhere(lost_first=True).error, Indeterminate)


def test_after_is_the_last_zxid_seen_on_accepted_hellos_only():
    s, conn = opened()
    s.frame(10, conn, WatchEvents(20, ()))
    assert s.last_zxid == 20
    s.connection_lost(30, conn)
    s.tick(100)
    (c,) = of(s.take(), Connect)
    s.connected(100, c.conn)
    (hello,) = sent(s.take())
    assert hello.after == 20 and hello.session
    # The node refuses (the session ended meanwhile), at zxid 50: it vouches for nothing.
    s.frame(110, c.conn, Failed(hello.xid, 50, ErrorCode.SESSION_EXPIRED, "ended"))
    assert s.last_zxid == 20
    (again,) = sent(s.take())
    assert isinstance(again, Hello) and again.after == 20 and not again.session
    assert again.client != CID


def test_the_planted_bug_takes_the_zxid_of_a_refused_hello():
    s, conn = opened(bugs=ClientBugs(zxid_from_failed_hello=True))
    s.connection_lost(30, conn)
    s.tick(100)
    (c,) = of(s.take(), Connect)
    s.connected(100, c.conn)
    (hello,) = sent(s.take())
    s.frame(110, c.conn, Failed(hello.xid, 50, ErrorCode.SESSION_EXPIRED, "ended"))
    assert s.last_zxid == 50


def test_watches_are_re_registered_after_a_failover_and_replays_filtered():
    s = session()
    wid = s.new_watch("/w", WatchMode.RECURSIVE)
    call = s.watch(0, wid, None)
    conn, hello, outs = connect(s)
    assert hello.watches == ()  # not registered anywhere yet: its own request registers it
    (req,) = sent(outs)
    assert req == WatchRequest(2, wid, "/w", WatchMode.RECURSIVE, None)
    s.frame(1, conn, Ok(req.xid, 10))
    assert Completed(call, None) in s.take() and s.watches[wid].armed
    event = WatchEvent(wid, "changed", "/w", 12)
    s.frame(2, conn, WatchEvents(12, (event,)))
    assert of(s.take(), Delivered) == [Delivered(event, False)]
    s.connection_lost(3, conn)
    s.tick(100)
    conn2, hello, _ = connect(s, 100, zxid=13)
    assert hello.watches == (WatchSpec(wid, "/w", WatchMode.RECURSIVE),) and hello.after == 12
    later = WatchEvent(wid, "created", "/w/x", 13)
    s.frame(101, conn2, WatchEvents(13, (event, later)))  # the replay repeats 12
    assert of(s.take(), Delivered) == [Delivered(later, False)]


def test_events_replayed_before_the_hello_answer_follow_the_link_up():
    """A node replays what changed while the client was away before it answers the hello:
    the connection is announced first, so a listener sees "up" before the events, and a
    hello that fails keeps neither the events nor their zxid (the next node replays them)."""
    s = session()
    wid = s.new_watch("/w", WatchMode.RECURSIVE)
    s.watch(0, wid, None)
    conn, _, outs = connect(s)
    (req,) = sent(outs)
    s.frame(1, conn, Ok(req.xid, 10))
    s.take()
    s.connection_lost(2, conn)
    s.tick(100)

    def replayed(now, zxid):
        (c,) = of(s.take(), Connect)
        s.connected(now, c.conn)
        (hello,) = sent(s.take())
        event = WatchEvent(wid, "changed", "/w", zxid)
        s.frame(now, c.conn, WatchEvents(zxid, (event,)))
        return c.conn, hello, event

    conn2, hello, event = replayed(100, 12)
    assert of(s.take(), Delivered) == [] and s.last_zxid == 10
    s.frame(101, conn2, Failed(hello.xid, 12, ErrorCode.UNAVAILABLE, "catching up"))
    assert of(s.take(), Delivered) == [] and s.last_zxid == 10
    s.tick(200)
    conn3, hello, event = replayed(200, 12)
    assert hello.after == 10
    s.frame(201, conn3, Ok(hello.xid, 12))
    outs = [o for o in s.take() if isinstance(o, Link | Delivered)]
    assert outs == [Link(True, conn3, outs[0].server), Delivered(event, False)]
    assert s.last_zxid == 12


def test_a_one_shot_watch_fires_once_and_is_forgotten():
    s = session()
    wid = s.new_watch("/x", WatchMode.DATA)
    s.read(0, ReadKind.GET, "/x", watch=wid)
    conn, _, outs = connect(s)
    (req,) = sent(outs)
    s.frame(1, conn, Ok(req.xid, 3, {"data": b"", "stat": {}}))
    s.take()
    event = WatchEvent(wid, "deleted", "/x", 4)
    s.frame(2, conn, WatchEvents(4, (event, WatchEvent(wid, "created", "/x", 5))))
    assert of(s.take(), Delivered) == [Delivered(event, True)]
    assert wid not in s.watches


def test_pings_renew_the_session_and_a_silent_node_suspends_it():
    s, conn = opened(now=0)
    assert s.ping_interval() == 1000 and s.next_deadline() == 1000
    s.tick(1000)
    (ping,) = sent(s.take())
    assert isinstance(ping, Ping)
    s.frame(1010, conn, Ok(ping.xid, 5))
    outs = s.take()
    assert Renewed(CID, 1000) in outs and s.last_ack_sent == 1000
    s.tick(2000)
    (ping,) = sent(s.take())
    s.tick(3000)  # not answered within the interval: the node is no good
    outs = s.take()
    assert Close(conn, "ping timed out") in outs
    assert StateChanged(SessionState.SUSPENDED) in outs and s.last_ack_sent == 1000
    (c,) = of(outs, Connect)  # the next server, at once
    s.connected(3050, c.conn)
    (hello,) = sent(s.take())
    s.frame(3050, c.conn, Ok(hello.xid, 0, {"node": 1}))
    conn2, outs = c.conn, s.take()
    (ping,) = sent(outs)  # at once: suspended, it wants to hear it is alive
    s.frame(3060, conn2, Ok(ping.xid, 5))
    assert StateChanged(SessionState.CONNECTED) in s.take() and s.last_ack_sent == 3050


def test_a_ping_answered_session_expired_loses_the_session():
    s, conn = opened(now=0)
    s.tick(1000)
    (ping,) = sent(s.take())
    s.frame(1010, conn, Failed(ping.xid, 9, ErrorCode.SESSION_EXPIRED, "expired"))
    outs = s.take()
    assert StateChanged(SessionState.LOST) in outs and not s.session
    assert s.session_id is None and s.last_ack_sent is None


def test_a_call_past_its_deadline_is_indeterminate_if_maybe_sent():
    s, conn = opened(attempt_timeout_ms=5000)
    write = s.write(0, Create("/a"), 1000)
    s.take()
    s.connection_lost(10, conn)  # no server comes back in time
    read = s.read(20, ReadKind.GET, "/", 500)
    s.take()
    s.tick(520)
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == read and isinstance(failed.error, Unavailable)
    assert str(failed.error).startswith("no answer within 0.5 s from a:1, b:2, c:3")
    s.tick(1000)
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == write and isinstance(failed.error, Indeterminate)


def test_every_server_refusing_fails_fast_unless_one_was_reached():
    s = session()
    call = s.read(0, ReadKind.GET, "/x", 10_000)
    for k in range(3):
        s.tick(k * 100)
        (c,) = of(s.take(), Connect)
        s.connect_failed(k * 100, c.conn, "connection refused")
    (failed,) = of(s.take(), CallFailed)
    assert failed.call == call and isinstance(failed.error, Unavailable)
    assert str(failed.error) == (
        "no server accepted a connection: a:1 (connection refused), b:2 (connection refused), "
        "c:3 (connection refused)"
    )


def test_a_session_named_by_the_cluster_becomes_the_client_id():
    s = session()
    call = s.open_session(0)
    conn, _, outs = connect(s)
    (req,) = sent(outs)
    s.frame(1, conn, Ok(req.xid, 5, {"session": FIRST_CLIENT_ID + 77, "timeout_ms": 2000}))
    assert Completed(call, {"session": FIRST_CLIENT_ID + 77, "timeout_ms": 2000}) in s.take()
    assert s.session_id == s.client_id == FIRST_CLIENT_ID + 77 and s.granted_ms == 2000


def test_a_close_ends_the_session_even_when_its_push_comes_first():
    s, conn = opened()
    call = s.close_session(10)
    (req,) = sent(s.take())
    assert isinstance(req, CloseSessionRequest) and req.seq == 2
    s.frame(20, conn, SessionEnded(30, CID))
    outs = s.take()
    assert Completed(call, None) in outs and StateChanged(SessionState.CLOSED) in outs
    assert StateChanged(SessionState.LOST) not in outs and not s.session


def test_shutdown_fails_what_is_pending_and_closes():
    s, conn = opened()
    call = s.write(10, Create("/a"))
    s.take()
    s.shutdown()
    outs = s.take()
    assert of(outs, CallFailed)[0].call == call and Close(conn, "the client is closed") in outs
    assert s.state is SessionState.CLOSED and s.next_deadline() is None


@pytest.mark.parametrize("seed", [1, 2])
def test_same_inputs_same_outputs(seed):
    def play():
        s = ClientSession(SERVERS, rng=random.Random(seed), new_secret=lambda: SECRET)
        s.open_session(0)
        log = []
        for now in range(0, 5000, 250):
            for out in s.take():
                log.append(out)
                if isinstance(out, Connect):
                    s.connected(now, out.conn)
                elif isinstance(out, Send):
                    req = out.request
                    value = GRANTED if isinstance(req, OpenSessionRequest) else None
                    s.frame(now, out.conn, Ok(req.xid, now, value))
            s.tick(now)
        return log

    assert play() == play()
