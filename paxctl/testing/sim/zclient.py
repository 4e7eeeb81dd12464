"""A simulated session client: the production ``ClientSession`` on simulated connections.

Everything the protocol decides (hello, failover, pings, sequence numbers and resends, the zxid
seen, watch re-registration and the filtering of replayed events) is ``paxctl/client/session.py``,
the same class the asyncio ``Client`` drives. This module is only its driver and its workload:

* the transport: connections are ``SimConn`` channels opened through the world, carrying the
  protocol's typed requests to the hosts' node engines and their typed frames back (no bytes);
  its timers are the world's;
* the workload: which writes to issue (open a session, random writes, now and then a close),
  one recursive watch, sync barriers, and silence (a SIGSTOPped process: it neither sends nor
  reads, so its session must expire; every input waits until it resumes);
* the oracle's records: when sessions open and are pinged alive, and what the watch validator
  must see (where the watch was registered, every event delivered, every frame's zxid).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paxctl.client.session import ClientSession
from paxctl.client.session_types import (
    CallFailed,
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
from paxctl.protocol.messages import (
    Failed,
    FromServer,
    Hello,
    Ok,
    OpenSessionRequest,
    Request,
    SessionEnded,
    WatchEvents,
    WatchMode,
    WatchRequest,
)
from paxctl.statemachine.errors import SessionExpired
from paxctl.statemachine.ops import TEMP_CLIENT_BIT, Create, Delete, Op, SetData
from paxctl.testing.sim.watchcheck import WatchValidator
from paxctl.testing.sim.zhost import SimConn

if TYPE_CHECKING:
    from paxctl.testing.sim.znodes import ZnodeWorld

HELLO_TIMEOUT_MS = 300  # a hello not answered this soon: the node is no good
WRITE_TIMEOUT_MS = 700  # one attempt (connect, or a request) on one node before failing over
RECONNECT_MS = 50  # pause after a failover
WATCH_ONLY_PING_MS = 300  # ping interval of a client with a watch but no session
PATHS = ("/n0", "/n1", "/n2", "/n3", "/n4")


@dataclass
class SessionRec:
    """What the simulator knows of one session, for the expiry invariants."""

    id: int
    client: int
    timeout: int
    alive_sent: int  # send time of the last ping answered alive (first: the open's first send)
    opened: bool = False  # the open was acknowledged
    open_acked_at: int | None = None
    ended_at: int | None = None  # first replica to apply its close, virtual time
    by_reaper: bool = False
    silent_since: int | None = None


def _z(zxid: int) -> str:
    return f"{zxid >> 16}.{zxid & 0xFFFF}"


def _describe(frame: FromServer) -> str:
    if isinstance(frame, WatchEvents):
        shown = " ".join(f"{e.kind}:{e.path}@{_z(e.zxid)}" for e in frame.events)
        what = f"events [{shown}]"
    elif isinstance(frame, SessionEnded):
        what = f"expired {frame.session:#x}"
    else:
        what = f"reply {frame.xid} {frame.code if isinstance(frame, Failed) else 'ok'}"
    return f"{what} z={_z(frame.zxid)}"


def client_secret(seed: int, index: int, generation: int) -> bytes:
    """The secret client ``index`` holds in its ``generation``-th life (a new one after each
    session ends, as the real client draws one): seeded bytes, so a run replays exactly, and
    drawn without touching the world's random stream. Its temporary id derives from it; once
    an open is answered, ``cid`` is the session id the cluster assigned."""
    return hashlib.sha256(b"paxctl sim client %d %d %d" % (seed, index, generation)).digest()


class ZClient:
    def __init__(self, world: ZnodeWorld, index: int) -> None:
        self.w = world
        self.index = index
        self.gen = 0
        self.s = ClientSession(
            [f"n{v}" for v in world.voters],
            rng=world.rng,
            new_secret=self._next_secret,
            attempt_timeout_ms=WRITE_TIMEOUT_MS,
            hello_timeout_ms=HELLO_TIMEOUT_MS,
            reconnect_ms=RECONNECT_MS,
            watch_ping_ms=WATCH_ONLY_PING_MS,
            bugs=world.client_bugs,
        )
        self.timeout = 0
        self.conns: dict[int, SimConn] = {}  # the session's connection id -> its channel
        self.hellos: dict[int, Hello] = {}  # SimConn id -> the last hello sent on it
        self.watch_xids: dict[int, int] = {}  # SimConn id -> xid of a watch request on it
        self.write: str | None = None  # the kind of write in progress, if any
        self.write_call = 0
        self.syncs: set[int] = set()  # sync calls (linearizable read barriers) in flight
        self.wid: int | None = None  # the application's watch
        self.validator = WatchValidator(world.oracle, f"client {index}")
        self.silent = False
        self.deferred: list[Callable[[], object]] = []  # inputs while silent, in order
        self.resumed = False
        self.active_since = 0
        self.close_at: int | None = None  # when to close the session on purpose
        self.writes_left = True
        self.timer_at: float | None = None

    def log(self, text: str) -> None:
        self.w.log(f"client {self.index}/{self.cid & ~TEMP_CLIENT_BIT:x} {text}")

    @property
    def cid(self) -> int:
        return self.s.client_id

    @property
    def session(self) -> bool:
        return self.s.session

    @property
    def conn(self) -> SimConn | None:
        """The connection the session uses now, if open."""
        sid = self.s.conn
        return None if sid is None else self.conns.get(sid)

    @property
    def active(self) -> bool:
        return not self.silent

    def _next_secret(self) -> bytes:
        secret = client_secret(self.w.spec.seed, self.index, self.gen)
        self.gen += 1
        return secret

    def _sid(self, conn: SimConn) -> int | None:
        sid = self.s.conn
        return sid if sid is not None and self.conns.get(sid) is conn else None

    # ------------------------------------------------------------------ driving the session

    def _input(self, event: Callable[[], object]) -> None:
        """Feed the session (or, while silent, keep the input for later) and act on it."""
        if self.silent:
            self.deferred.append(event)
            return
        event()
        self._pump()

    def _pump(self) -> None:
        for out in self.s.take():
            if isinstance(out, Send):
                self._send(out.conn, out.request)
            elif isinstance(out, Connect):
                node = self.w.voters[out.server % len(self.w.voters)]
                connect = functools.partial(self._connected, out.conn, node)
                self.w.at(self.w.rng.randint(1, 10), connect)
            elif isinstance(out, Close):
                self._closed_conn(out.conn, out.reason)
            elif isinstance(out, Completed | CallFailed):
                self._call_done(out)
            elif isinstance(out, Delivered):
                e = out.event
                self.w.stats.watch_events += 1
                self.w.stats.resyncs += e.kind == "resync"
                self.validator.deliver(e.zxid, e.kind, e.path)
            elif isinstance(out, Renewed):
                self.w.stats.pings_answered += 1
                self.w.ping_alive(out.session, int(out.sent))
            elif isinstance(out, Link) and out.up:
                self.log(f"connected to n{self.w.voters[out.server % len(self.w.voters)]}")
            elif isinstance(out, StateChanged) and out.state is SessionState.LOST:
                self.log("lost its session")
                self.w.stats.sessions_lost_seen += 1
        self._schedule()

    def _schedule(self) -> None:
        due = self.s.next_deadline()
        if due is None or (self.timer_at is not None and self.timer_at <= due):
            return
        self.timer_at = due
        self.w.at(max(1, math.ceil(due - self.w.now)), lambda: self._timer(due))

    def _timer(self, due: float) -> None:
        if self.timer_at == due:
            self.timer_at = None
        if not self.silent:
            self.s.tick(self.w.now)
            self._pump()

    def _connected(self, sid: int, node: int) -> None:
        if self.silent:
            self.deferred.append(lambda: self._connected(sid, node))
            return
        if self.s.conn != sid:
            return  # given up meanwhile
        conn = self.w.open_conn(self, node)
        if conn is None:  # refused: the node is down (it may come back: never give up)
            self._input(lambda: self.s.connect_failed(self.w.now, sid))
            return
        self.conns[sid] = conn
        self._input(lambda: self.s.connected(self.w.now, sid))

    def _send(self, sid: int, req: Request) -> None:
        conn = self.conns[sid]
        if isinstance(req, Hello):
            self.hellos[conn.id] = req
        elif isinstance(req, WatchRequest):
            self.watch_xids[conn.id] = req.xid
        elif isinstance(req, OpenSessionRequest):
            self.w.session_opening(self)  # the first attempt starts the session's clock
        if self.w.trace is not None:
            after = getattr(req, "after", None)
            extra = f" after={_z(after)}" if after else ""
            self.log(f"-> n{conn.node} {conn} {type(req).__name__} {req.xid}{extra}")
        self.w.to_node(conn, req)

    def _closed_conn(self, sid: int, why: str) -> None:
        conn = self.conns.pop(sid, None)
        if conn is None:
            return
        self.log(f"fails over from n{conn.node} ({why})")
        self.w.close_conn(conn)
        self.w.stats.client_failovers += 1
        self.w.stats.retries += self.write is not None

    def failover(self, why: str) -> None:
        """The connection broke (the world cut it): the session moves to the next node."""
        self._input(lambda: self.s.failover(self.w.now, why))

    def conn_lost(self, conn: SimConn) -> None:
        """The node closed the connection (it crashed)."""

        def lost() -> None:
            sid = self._sid(conn)
            if sid is not None:
                self.s.connection_lost(self.w.now, sid)

        self._input(lost)

    # ------------------------------------------------------------------ frames from the node

    def on_frame(self, conn: SimConn, msg: FromServer) -> None:
        if self.silent:
            self.deferred.append(lambda: self.on_frame(conn, msg))
            return
        sid = self._sid(conn)
        if sid is None or not conn.open:
            return
        if self.w.trace is not None:
            self.log(f"<- n{conn.node} {conn} {_describe(msg)}")
        self._watch_registered(conn, msg)
        self.s.frame(self.w.now, sid, msg)
        self._pump()
        # A push ahead of the hello's answer is held by the session, unseen, until that
        # answer: the answer's own check then covers it.
        held = isinstance(msg, WatchEvents) and not self.s.ready
        if conn.watching and not held:
            kind = "a reply" if isinstance(msg, Ok | Failed) else "a push"
            what = f"{kind} from n{conn.node}"
            self.validator.check_frame(msg.zxid, what)

    def _watch_registered(self, conn: SimConn, msg: FromServer) -> None:
        """Tell the validator where the watch took effect on ``conn``: the hello's ``after``
        (its answer, or events its registration replayed ahead of that answer), or the zxid
        of the answer to a watch request."""
        if conn.watching:
            return
        hello = self.hellos.get(conn.id)
        if hello is not None and (
            isinstance(msg, WatchEvents)
            or (isinstance(msg, Ok) and msg.xid == hello.xid and hello.watches)
        ):
            conn.watching = True
            self.validator.arm(hello.after)
        elif isinstance(msg, Ok) and msg.xid == self.watch_xids.get(conn.id):
            conn.watching = True
            self.validator.arm(msg.zxid)

    # ------------------------------------------------------------------ calls

    def _call_done(self, out: Completed | CallFailed) -> None:
        if out.call in self.syncs:
            self.syncs.discard(out.call)
            self.w.stats.reads_served += isinstance(out, Completed)
            self.w.stats.reads_failed += isinstance(out, CallFailed)
            return
        if out.call != self.write_call or self.write is None:
            return
        kind, self.write = self.write, None
        rng = self.w.rng
        if isinstance(out, CallFailed) and isinstance(out.error, SessionExpired):
            self.w.at(rng.randint(20, 200), self.next_write)  # lost: a new session then
            return
        if kind == "open_session" and isinstance(out, Completed):
            self.w.session_opened(self)
        elif kind == "close_session":
            self.log("closed its session")
            self.w.stats.sessions_closed += 1
            self.writes_left = rng.random() < 0.5
            self.w.at(rng.randint(20, 200), self.next_write)
            return
        elif kind == "write":
            self.w.stats.completed += 1
        self.w.at(rng.randint(10, 150), self.next_write)

    def connect(self) -> None:
        """Start: connect now (the session would on its first call anyway)."""
        self._input(lambda: self.s.tick(self.w.now))

    def next_write(self) -> None:
        if self.write is not None or self.silent or self.w.healed or not self.writes_left:
            return
        rng, now = self.w.rng, self.w.now
        if not self.s.session:
            self.timeout = rng.randint(*self.w.session_ms)
            self.write, self.write_call = "open_session", self.s.open_session(now, self.timeout)
        elif self.close_at is not None and now >= self.close_at:
            self.close_at = None
            self.write, self.write_call = "close_session", self.s.close_session(now)
        else:
            self.write, self.write_call = "write", self.s.write(now, self._random_op())
        self.w.stats.submitted += 1
        self._pump()

    def _random_op(self) -> Op:
        rng = self.w.rng
        data = rng.randbytes(rng.randint(0, 4))
        r = rng.random()
        path = rng.choice(PATHS)
        if r < 0.3:
            return Create(path, data, ephemeral=rng.random() < 0.6)
        if r < 0.45:
            return Create(
                "/q/s-", data, sequential=True, parents=True, ephemeral=rng.random() < 0.5
            )
        if r < 0.75:
            return SetData(path, data)
        return Delete(path)

    def add_watch(self) -> None:
        """The application's one recursive watch on "/", from now on."""
        if self.wid is not None or self.silent:
            return
        self.wid = self.s.new_watch("/", WatchMode.RECURSIVE)
        wid = self.wid
        self._input(lambda: self.s.watch(self.w.now, wid, None))

    def sync_loop(self) -> None:
        """Now and then a linearizable read barrier: its answer, like every answer, must come
        after the events it reflects (J1)."""
        if self.s.ready and not self.silent and len(self.syncs) < 3:
            self.syncs.add(self.s.sync(self.w.now))
            self._pump()
        if not self.w.healed:
            self.w.at(self.w.rng.randint(100, 600), self.sync_loop)

    # ------------------------------------------------------------------ SIGSTOP, SIGCONT

    def go_silent(self) -> None:
        if self.silent:
            return
        self.log("goes silent")
        self.silent = True
        self.w.client_silent(self)

    def resume(self) -> None:
        """Everything that arrived meanwhile is read, in order; then whatever timed out."""
        if not self.silent:
            return
        self.log("resumes")
        self.silent, self.resumed, self.active_since = False, True, self.w.now
        deferred, self.deferred = self.deferred, []
        for event in deferred:
            event()
            self._pump()
        self._input(lambda: self.s.tick(self.w.now))
        self.w.at(1, self.next_write)
