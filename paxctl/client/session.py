"""The client's protocol engine, sans I/O: one state machine that both clients drive.

The asyncio ``Client`` (client.py) and the simulator's clients (testing/sim/zclient.py) move
bytes and run timers; every protocol decision is made here, from typed inputs, in one place (as
h11's ``_state.py`` does for HTTP): which server to try next and when to give one up (a
*failover*: a connect, hello or answer not in time, a refusal, ``Unavailable``, a lost
connection); the hello on each connection (client id, session, ``after`` = the last zxid seen,
the watches a node had registered, so the next node replays what they missed); xids; write
sequence numbers, a write resent after a failover keeping its ``seq`` (applied once) and one of
a lost session never resent (``SessionExpired``); the session opened, pinged and closed; the
last zxid seen, counted only on connections whose hello took effect (a refused hello's answer
must not move the point the watches resume from); watch events delivered once each.

Inputs: the calls (``open_session``, ``write``, ``read`` ...: each returns a call id), then
``connected``, ``connect_failed``, ``frame``, ``connection_lost``, ``failover`` and ``tick``,
each with the time in monotonic milliseconds (nothing here reads a clock). Outputs, in order,
from ``take()``: see session_types.py. ``next_deadline()`` says when ``tick`` is due next.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from paxctl.client.errors import ConnectionLost, Indeterminate, Unavailable
from paxctl.client.queue_reply import parse_queue_reply, settle_records
from paxctl.client.session_types import (
    _HELLO,
    _PING,
    NO_CLIENT_BUGS,
    CallFailed,
    CallRecord,
    ClientBugs,
    Close,
    Completed,
    Connect,
    ConnRecord,
    Delivered,
    Link,
    Output,
    Renewed,
    Send,
    SessionState,
    StateChanged,
    WatchRecord,
    hello_watch_bytes,
)
from paxctl.protocol.codec import ProtocolError, session_granted
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.framing import HELLO_WATCH_BYTES
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    FromServer,
    Hello,
    MembersRequest,
    OpenSessionRequest,
    Ping,
    QueueWatches,
    ReadKind,
    ReadRequest,
    ReconfigRequest,
    Reply,
    Request,
    SessionEnded,
    StatusRequest,
    SyncRequest,
    UnwatchRequest,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.secrets import temporary_id
from paxctl.statemachine.errors import MultiError, SessionExpired, error_from_code
from paxctl.statemachine.ops import Once, OnceOp, Op

if TYPE_CHECKING:
    import random  # only its type: the driver hands in the generator


class ClientSession:
    """One client's protocol state: see the module docstring."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        rng: random.Random,
        new_secret: Callable[[], bytes],
        session_timeout_ms: float = 10_000,
        ping_interval_ms: float | None = None,
        watch_ping_ms: float | None = None,
        attempt_timeout_ms: float = 2000,
        hello_timeout_ms: float = 2000,
        reconnect_ms: float = 50,
        bugs: ClientBugs = NO_CLIENT_BUGS,
    ) -> None:
        #: Names of the servers, for messages; the driver may replace the list.
        self.servers = list(servers)
        #: The next server to try (a counter: the driver takes it modulo its list).
        self.server = rng.randrange(max(1, len(self.servers)))
        self.new_secret = new_secret
        # The secret proves every hello (protocol/secrets.py): the temporary id is derived from
        # it, a session opened under that id is resumed with it. Kept until the session ends;
        # never printed, logged or shown.
        self._secret = new_secret()
        self.client_id = temporary_id(self._secret)
        self.session = False
        self.state = SessionState.NONE
        self.session_timeout_ms = session_timeout_ms
        self.ping_interval_ms = ping_interval_ms
        self.watch_ping_ms = watch_ping_ms
        self.attempt_timeout_ms = attempt_timeout_ms
        self.hello_timeout_ms = hello_timeout_ms
        self.reconnect_ms = reconnect_ms
        self.bugs = bugs
        self.granted_ms: float | None = None
        self.last_ack_sent: float | None = None
        self.last_zxid = 0
        self.seq = 0
        self.epoch = 0  # bumped when a session ends: writes of the old one must not resend
        self.reached = False  # a connection was accepted once: refusals may be a failover
        self.closed = False
        self.watches: dict[int, WatchRecord] = {}
        self._wids = itertools.count(1)
        self._conn: ConnRecord | None = None
        self._conns = itertools.count(1)
        self._reconnect_at: float | None = None
        self._failovers = 0  # in a row, since the last connection that became ready
        self._calls: dict[int, CallRecord] = {}
        self._call_ids = itertools.count(1)
        self._closing: int | None = None  # the close_session call in flight
        self._ping: tuple[int, int, float, bool] | None = None  # conn, xid, sent, with session
        self._ping_at: float | None = None
        self._refused: dict[int, str] = {}
        self._out: list[Output] = []

    # ------------------------------------------------------------------ queries

    @property
    def session_id(self) -> int | None:
        return self.client_id if self.session else None

    @property
    def conn(self) -> int | None:
        """The current connection (ready or not), if any."""
        return self._conn.id if self._conn is not None else None

    @property
    def ready(self) -> bool:
        return self._conn is not None and self._conn.ready

    def take(self) -> list[Output]:
        """The outputs since the last call, in order: act on every one."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` is next due (None: nothing to time)."""
        times = [c.deadline for c in self._calls.values() if c.deadline is not None]
        times += [c.attempt_deadline for c in self._calls.values() if c.conn is not None]
        conn = self._conn
        if conn is None:
            if self._reconnect_at is not None and self._wanted():
                times.append(self._reconnect_at)
        elif not conn.ready:
            times.append(conn.deadline)
        elif self._ping is not None:
            times.append(self._ping[2] + self.ping_interval())
        elif self._ping_at is not None and self._pinging():
            times.append(self._ping_at)
        return min(times) if times else None

    def ping_interval(self) -> float:
        if self.ping_interval_ms is not None:
            return self.ping_interval_ms
        if not self.session and self.watch_ping_ms is not None:
            return self.watch_ping_ms
        return (self.granted_ms or self.session_timeout_ms) / 3

    # ------------------------------------------------------------------ calls

    def open_session(
        self, now: float, timeout_ms: int | None = None, call_timeout_ms: float | None = None
    ) -> int:
        """Open a session under the current (temporary) id; completes with the cluster's
        ``{"session": id, "timeout_ms": ms}``, and the session's id is the client id then."""
        if timeout_ms is not None:
            self.session_timeout_ms = timeout_ms
        self.seq += 1
        req = OpenSessionRequest(0, self.seq, max(1, int(self.session_timeout_ms)))
        return self._call(now, req, call_timeout_ms, write=True)

    def close_session(self, now: float, call_timeout_ms: float | None = None) -> int:
        """End the session: its ephemerals go at once. Any sign that the session ended while
        this is in flight (a push, an expired ping or hello) completes it."""
        self.seq += 1
        call = self._call(now, CloseSessionRequest(0, self.seq), call_timeout_ms, write=True)
        self._closing = call
        return call

    def write(
        self,
        now: float,
        op: Op,
        call_timeout_ms: float | None = None,
        queue: QueueWatches | None = None,
    ) -> int:
        """One write, with the next sequence number; resent with it until answered. Needs a
        session (the caller opens one first); writes are sent one at a time by the caller.
        ``queue``: a sequential create's watches (from ``new_watch``, see queue_reply.py)."""
        self.seq += 1
        return self._call(now, WriteRequest(0, self.seq, op, queue), call_timeout_ms, write=True)

    def write_once(self, now: float, op: OnceOp, call_timeout_ms: float | None = None) -> int:
        """One write without a session (``Once``: one consensus round), under the temporary
        id, resent with its ``seq`` until answered like any write. Its ``after`` is the last
        zxid seen when it is first sent, and stays the same on every resend: the cluster
        tells a retry it may have forgotten by it (statemachine/once.py)."""
        if self.session:
            raise ValueError("a client with a session writes in it: use write")
        self.seq += 1
        req = WriteRequest(0, self.seq, Once(0, op))
        return self._call(now, req, call_timeout_ms, write=True)

    def read(
        self,
        now: float,
        kind: ReadKind,
        path: str = "/",
        call_timeout_ms: float | None = None,
        *,
        local: bool = False,
        stats: bool = False,
        watch: int | None = None,
        session: int = 0,
    ) -> int:
        """A read; ``watch`` (from ``new_watch``) is registered atomically with it."""
        req = ReadRequest(0, kind, path, stats, watch, session, local, self.last_zxid)
        call = self._call(now, req, call_timeout_ms, wid=watch)
        return call

    def watch(
        self, now: float, wid: int, after: int | None, call_timeout_ms: float | None = None
    ) -> int:
        """Register the watch ``wid`` (from ``new_watch``) without a read."""
        rec = self.watches[wid]
        if after is not None:
            rec.floor = after
        req = WatchRequest(0, wid, rec.path, rec.mode, after)
        return self._call(now, req, call_timeout_ms, wid=wid)

    def new_watch(self, path: str, mode: WatchMode) -> int:
        wid = next(self._wids)
        self.watches[wid] = WatchRecord(path, mode)
        return wid

    def unwatch(self, now: float, wid: int) -> int | None:
        """Forget the watch; tell the node, if connected (once, never retried)."""
        self.watches.pop(wid, None)
        if not self.ready:
            return None
        return self._call(now, UnwatchRequest(0, wid), self.attempt_timeout_ms, retry=False)

    def sync(self, now: float, call_timeout_ms: float | None = None) -> int:
        return self._call(now, SyncRequest(0), call_timeout_ms)

    def status(self, now: float, call_timeout_ms: float | None = None) -> int:
        return self._call(now, StatusRequest(0), call_timeout_ms)

    def members(self, now: float, call_timeout_ms: float | None = None) -> int:
        """The configuration as the serving node knows it (a ``members_reply`` value)."""
        return self._call(now, MembersRequest(0), call_timeout_ms)

    def reconfigure(
        self, now: float, req: ReconfigRequest, call_timeout_ms: float | None = None
    ) -> int:
        """A configuration change (``req`` carries its proof). Sent once: nothing dedups a
        change, so after a lost connection or answer it ends ``Indeterminate`` rather than
        being made twice (the caller reads the configuration to learn its fate). A node that
        answers ``Unavailable`` did nothing: the change goes on to the next node."""
        return self._call(now, req, call_timeout_ms, once=True)

    def cancel(self, call: int) -> None:
        """The caller gave up on ``call``: never resend it (an answer is ignored)."""
        if call in self._calls:
            self._forget(self._calls[call])

    def _call(
        self,
        now: float,
        req: Request,
        timeout_ms: float | None,
        *,
        write: bool = False,
        retry: bool = True,
        once: bool = False,
        wid: int | None = None,
    ) -> int:
        call = next(self._call_ids)
        deadline = None if timeout_ms is None else now + timeout_ms
        c = CallRecord(call, req, deadline, timeout_ms, write, self.epoch, retry, once, wid)
        self._calls[call] = c
        if self.closed:
            self._fail(c, ConnectionLost("the client is closed"))
        elif self.ready:
            self._send_call(now, c)
        else:
            self._want_connection(now)
        return call

    # ------------------------------------------------------------------ transport inputs

    def connected(self, now: float, conn: int) -> None:
        """The connection ``conn`` (of a ``Connect``) is open: say hello on it."""
        c = self._conn
        if c is None or c.id != conn or self.closed:
            self._out.append(Close(conn, "not wanted any more"))
            return
        self.reached = True
        self._refused.pop(c.server % max(1, len(self.servers)), None)
        c.deadline = now + self.hello_timeout_ms
        self._hello(c, self.last_zxid)

    def connect_failed(self, now: float, conn: int, refused: str | None = None) -> None:
        """``conn`` could not be opened; ``refused`` says why when it cannot come back soon
        (refused, unreachable, unresolvable), None for a timeout or a busy server."""
        c = self._conn
        if c is None or c.id != conn:
            return
        n = max(1, len(self.servers))
        if refused is not None:
            self._refused[c.server % n] = refused
        else:
            self._refused.pop(c.server % n, None)
        self._failover(now, refused or "connect failed")
        # Nothing to wait for, unless a server was reached once (this may be a failover) or
        # a session lives (its ephemerals matter: ride it out).
        if not (self.reached or self.session) and len(self._refused) >= n:
            tried = ", ".join(
                f"{self.servers[i]} ({self._refused[i]})" for i in range(len(self.servers))
            )
            error = f"no server accepted a connection: {tried}"
            for call in list(self._calls.values()):
                self._fail(call, Unavailable(error))

    def connection_lost(self, now: float, conn: int) -> None:
        if self._conn is not None and self._conn.id == conn:
            self._failover(now, "connection lost")

    def failover(self, now: float, why: str) -> None:
        """Give the current server up (the driver's reason, e.g. a connection that broke)."""
        if self._conn is not None:
            self._failover(now, why)

    def tick(self, now: float) -> None:
        """Act on whatever timed out or fell due by ``now``."""
        if self.closed:
            return
        for call in list(self._calls.values()):
            if call.deadline is not None and now >= call.deadline and call.id in self._calls:
                self._expire_call(call)
        c = self._conn
        if c is not None and (
            (not c.ready and now >= c.deadline)
            or any(
                call.conn == c.id and now >= call.attempt_deadline for call in self._calls.values()
            )
        ):
            self._failover(now, "no reply in time")
        if self._ping is not None and now >= self._ping[2] + self.ping_interval():
            self._failover(now, "ping timed out")
        if self._pinging():
            if self._ping_at is None:
                self._ping_at = now
            if self._ping is None and now >= self._ping_at:
                if self.ready:
                    self._send_ping(now)
                else:
                    self._want_connection(now)
        if self._conn is None and self._wanted():
            self._want_connection(now)

    def frame(self, now: float, conn: int, msg: FromServer) -> None:
        """A frame from ``conn``, in the order received."""
        c = self._conn
        if c is None or c.id != conn or self.closed:
            return
        if isinstance(msg, WatchEvents):
            if not c.ready:
                c.early.append(msg)
                return
            self._events(msg)
        elif isinstance(msg, SessionEnded):
            if msg.session == self.client_id and self.session:
                self._lost(now, "the node pushed its end")
        else:
            what = c.pending.pop(msg.xid, None)
            if what == _HELLO:
                self._hello_answered(now, c, msg)
            elif what == _PING:
                self._ping_answered(now, msg)
            elif what is not None and what in self._calls:
                self._answered(now, self._calls[what], msg)
        if c.greeted or self.bugs.zxid_from_failed_hello:
            self.last_zxid = max(self.last_zxid, msg.zxid)

    def shutdown(self) -> None:
        """The client is closed: drop the connection, fail what is pending, end the watches."""
        if self.closed:
            return
        self.closed = True
        if self._conn is not None:
            self._drop_conn("the client is closed")
        for call in list(self._calls.values()):
            self._fail(call, ConnectionLost("the client is closed"))
        self.watches.clear()
        self.session = False
        if self.state is not SessionState.NONE:
            self._set_state(SessionState.CLOSED)

    # ------------------------------------------------------------------ connections

    def _wanted(self) -> bool:
        return not self.closed and (bool(self._calls) or self._pinging())

    def _pinging(self) -> bool:
        """Ping while there is a session or an armed watch: a connection that goes quiet (a
        dead or cut-off node) is noticed and replaced, and the watches resume on the next."""
        if self.closed or self._closing is not None:
            return False
        return self.session or any(w.armed for w in self.watches.values())

    def _want_connection(self, now: float) -> None:
        if self._conn is not None or self.closed:
            return
        if self._reconnect_at is not None and now < self._reconnect_at:
            return  # the tick at _reconnect_at connects
        self._reconnect_at = None
        conn = next(self._conns)
        self._conn = ConnRecord(conn, self.server, now + self.attempt_timeout_ms)
        self._out.append(Connect(conn, self.server))

    def _hello(self, c: ConnRecord, after: int, probe: bool = True) -> None:
        watches = tuple(
            WatchSpec(wid, w.path, w.mode) for wid, w in self.watches.items() if w.armed
        )
        # A node takes only a small frame before a hello: with many watches, say hello without
        # them first, then (same ``after``) with them; nothing else comes in between.
        c.probing = probe and hello_watch_bytes(watches) > HELLO_WATCH_BYTES
        if c.probing:
            watches = ()
        xid = self._xid(c, _HELLO)
        c.hello = Hello(xid, self.client_id, self.session, after, watches, self._secret)
        self._out.append(Send(c.id, c.hello))

    def _xid(self, c: ConnRecord, what: int) -> int:
        xid = c.next_xid
        c.next_xid += 1
        c.pending[xid] = what
        return xid

    def _hello_answered(self, now: float, c: ConnRecord, reply: Reply) -> None:
        assert c.hello is not None
        if isinstance(reply, Failed):
            lost = (ErrorCode.SESSION_EXPIRED, ErrorCode.AUTH_FAILED)
            if reply.code in lost and c.hello.session:
                # Ended, or (never, but for a bug) not ours: either way it cannot be resumed.
                after = c.hello.after
                self._lost(now, f"its hello was refused ({reply.code})", keep=c)
                self._hello(c, after)  # again, without the session, from the same zxid
            else:
                self._failover(now, f"hello refused: {reply.message or reply.code}")
            return
        if c.probing:  # the node took the small hello: now the one with the watches
            self._hello(c, c.hello.after, probe=False)
            return
        c.ready = c.greeted = True
        c.zxid = reply.zxid  # counted as seen once this frame is handled; calls go out first
        self._failovers = 0
        self._out.append(Link(True, c.id, c.server))
        for early in c.early:
            self._events(early)
            self.last_zxid = max(self.last_zxid, early.zxid)
        c.early.clear()
        for call in list(self._calls.values()):
            if call.conn is None and call.id in self._calls:
                self._send_call(now, call)
        suspended = self.state is SessionState.SUSPENDED
        due = self._ping_at is None or self._ping_at <= now or suspended
        if self._pinging() and self._ping is None and due:
            self._send_ping(now)

    def _drop_conn(self, why: str) -> None:
        c = self._conn
        assert c is not None
        self._conn = None
        self._out.append(Close(c.id, why))
        if c.ready:
            self._out.append(Link(False, c.id, c.server))
        if self._ping is not None and self._ping[0] == c.id:
            self._ping = None
        for call in list(self._calls.values()):
            if call.conn == c.id:
                call.conn = None
                call.last = why
                call.unanswered = call.unanswered or call.maybe_sent
                if not call.retry:
                    self._fail(call, ConnectionLost(f"connection lost ({why})"))
                elif call.once and call.maybe_sent:
                    message = f"no answer to a configuration change ({why}): it may or may not "
                    self._fail(call, Indeterminate(message + "have been made"))

    def _failover(self, now: float, why: str) -> None:
        """Close the connection and try the next server; pending calls are resent there.

        The next server is tried at once: a lost connection or a refusal says nothing about
        the others (a dead leader's followers elect a new one meanwhile). Only once every
        server failed in a row does the client pause ``reconnect_ms`` between attempts.
        """
        if self._conn is not None:
            self._drop_conn(why)
        self.server += 1
        self._failovers += 1
        at_once = self._failovers < max(1, len(self.servers))
        self._reconnect_at = now if at_once else now + self.reconnect_ms
        if self.session:
            self._set_state(SessionState.SUSPENDED)

    # ------------------------------------------------------------------ calls on the wire

    def _send_call(self, now: float, call: CallRecord) -> None:
        c = self._conn
        assert c is not None and c.ready
        req = call.request
        if isinstance(req, ReadRequest):
            req = replace(req, min_zxid=max(req.min_zxid, self.last_zxid))
        elif isinstance(req, WriteRequest) and isinstance(req.op, Once) and call.first_sent is None:
            # First sent now: it is applied after what this connection's hello showed.
            after = max(self.last_zxid, c.zxid)
            req = call.request = replace(req, op=Once(after, req.op.op))
        req = replace(req, xid=self._xid(c, call.id))
        call.conn = c.id
        call.attempt_deadline = now + self.attempt_timeout_ms
        call.maybe_sent = True
        if call.first_sent is None:
            call.first_sent = now
        self._out.append(Send(c.id, req))

    def _answered(self, now: float, call: CallRecord, reply: Reply) -> None:
        if isinstance(reply, Failed):
            code = reply.code
            if code == ErrorCode.UNAVAILABLE and call.retry:
                call.last = reply.message or str(code)
                call.maybe_sent = call.unanswered  # this node did nothing with it
                self._failover(now, f"the node cannot serve it now: {call.last}")
                return
            if call.id == self._closing and code == ErrorCode.SESSION_EXPIRED:
                self._session_ended(now, closed=True)  # gone already: closed all the same
                return
            if code == ErrorCode.INDETERMINATE:
                self._fail(call, Indeterminate(reply.message))
                return
            error = error_from_code(str(code), reply.message)
            self._fail(call, error if reply.index is None else MultiError(reply.index, error))
            if code == ErrorCode.SESSION_EXPIRED and call.write and self.session:
                self._lost(now, "a write found the session ended")
            return
        if isinstance(call.request, OpenSessionRequest):
            try:
                self._opened(call, reply.value)
            except ProtocolError as exc:  # a node that breaks the protocol: try another
                self._failover(now, str(exc))
                return
        queue = call.request.queue if isinstance(call.request, WriteRequest) else None
        if queue is not None:
            try:
                settle_records(self.watches, queue, parse_queue_reply(reply.value))
            except ProtocolError as exc:
                self._failover(now, str(exc))
                return
        del self._calls[call.id]
        if call.id == self._closing:
            self._session_ended(now, closed=True)
        if call.wid is not None and call.wid in self.watches:
            self.watches[call.wid].armed = True
            if self._ping_at is None:
                self._ping_at = now + self.ping_interval()
        self._out.append(Completed(call.id, reply.value))

    def _opened(self, call: CallRecord, value: Any) -> None:
        # Opened under the temporary id; the cluster named the session: our id from now on.
        answer = session_granted(value)  # ProtocolError if the node broke the protocol
        self.client_id, self.granted_ms = answer.session, answer.timeout_ms
        self.session = True
        assert call.first_sent is not None  # the session's clock starts no earlier
        self.last_ack_sent = call.first_sent
        self._ping_at = call.first_sent + self.ping_interval()
        self._set_state(SessionState.CONNECTED)

    def _expire_call(self, call: CallRecord) -> None:
        last = "no reply in time" if call.conn is not None or self._conn is not None else call.last
        secs = (call.timeout_ms or 0) / 1000
        if (call.write or call.once) and call.maybe_sent:
            self._fail(call, Indeterminate(f"write outcome unknown after {secs:g}s ({last})"))
        else:
            tried = ", ".join(self.servers)
            self._fail(call, Unavailable(f"no answer within {secs:g} s from {tried} ({last})"))

    def _fail(self, call: CallRecord, error: Exception) -> None:
        self._forget(call)
        self._out.append(CallFailed(call.id, error))

    def _forget(self, call: CallRecord) -> None:
        """``call`` is over: a watch it was to register, and is not yet, goes with it."""
        self._calls.pop(call.id, None)
        if call.id == self._closing:
            self._closing = None
        if call.wid is not None and not getattr(self.watches.get(call.wid), "armed", True):
            del self.watches[call.wid]
        if isinstance(call.request, WriteRequest) and call.request.queue is not None:
            settle_records(self.watches, call.request.queue, None)

    # ------------------------------------------------------------------ pings and sessions

    def _send_ping(self, now: float) -> None:
        c = self._conn
        assert c is not None and c.ready
        xid = self._xid(c, _PING)
        self._ping = (c.id, xid, now, self.session)
        self._ping_at = now + self.ping_interval()
        self._out.append(Send(c.id, Ping(xid)))

    def _ping_answered(self, now: float, reply: Reply) -> None:
        assert self._ping is not None
        _, _, sent, with_session = self._ping
        self._ping = None
        if isinstance(reply, Failed):
            if reply.code == ErrorCode.SESSION_EXPIRED:
                self._lost(now, "a ping found the session ended")
            else:
                self._failover(now, f"ping refused: {reply.code}")
        elif with_session and self.session:
            self.last_ack_sent = sent
            self._set_state(SessionState.CONNECTED)
            self._out.append(Renewed(self.client_id, sent))

    def _lost(self, now: float, why: str, keep: ConnRecord | None = None) -> None:
        """The cluster ended our session: its ephemerals are gone; a new one opens on demand
        (unless we were closing it: then this is the close taking effect)."""
        if not self.session:
            return
        self._session_ended(now, closed=self._closing is not None)
        if self._conn is not None and self._conn is not keep:
            self._drop_conn(why)
            self._reconnect_at = now + self.reconnect_ms

    def _session_ended(self, now: float, closed: bool) -> None:
        old = self.epoch
        self.session = False
        self.epoch += 1
        self._secret = self.new_secret()  # a new temporary id: the old one opened a session
        self.client_id = temporary_id(self._secret)
        self.seq = 0
        self.last_ack_sent = None
        self._ping = None
        closing = self._calls.pop(self._closing, None) if self._closing is not None else None
        self._closing = None
        self._set_state(SessionState.CLOSED if closed else SessionState.LOST)
        for call in list(self._calls.values()):
            if call.write and call.epoch == old:
                fate = "its outcome is unknown" if call.maybe_sent else "it was not sent"
                self._fail(call, SessionExpired(f"the session expired during this write; {fate}"))
        if closing is not None:
            self._out.append(Completed(closing.id, None))

    def _set_state(self, state: SessionState) -> None:
        if state is not self.state:
            self.state = state
            self._out.append(StateChanged(state))

    # ------------------------------------------------------------------ watches

    def _events(self, msg: WatchEvents) -> None:
        floors = {wid: w.floor for wid, w in self.watches.items()}
        for event in msg.events:
            rec = self.watches.get(event.wid)
            if rec is None or event.zxid <= floors.get(event.wid, 0):
                continue  # unknown, or delivered before (a replay after failover)
            rec.floor = max(rec.floor, event.zxid)
            if rec.one_shot:
                del self.watches[event.wid]
            self._out.append(Delivered(event, rec.one_shot))
