"""A simulated session client, behaving as ``paxctl/client/client.py`` does.

It talks to one node at a time over an ordered connection. It says hello first (with its
session, if it has one, the last zxid it saw in any frame, and its watches, so the node resumes
them from there), opens its session with a write, pings every timeout/3 while it has a session
or a watch (a ping not answered within the interval means the node is no good: fail over to the
next one), writes one command at a time and retries it on the next node after a timeout with
the same ``(client, seq)``, and filters replayed watch events at or below the last zxid it
delivered for the watch. A lost session (ping, hello or write answered ``SessionExpired``, or
pushed ``expired``) makes it start over with a new client id, as the real client does.

Unlike the real client it can go silent (a SIGSTOPped process: it neither sends nor reads, and
its session must expire), and it closes its session on purpose now and then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paxctl.statemachine.ops import TEMP_CLIENT_BIT, Create, Delete, Op, SetData
from paxctl.testing.sim.watchcheck import WatchValidator
from paxctl.testing.sim.zhost import SimConn

if TYPE_CHECKING:
    from paxctl.testing.sim.znodes import ZnodeWorld

HELLO_TIMEOUT_MS = 300  # one connection attempt (connect + hello)
WRITE_TIMEOUT_MS = 700  # one write attempt on one node before failing over
RECONNECT_MS = 50  # pause after a failover
WATCH_ONLY_PING_MS = 300  # ping interval of a client with a watch but no session
WATCH_ID = 1
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


def _describe(frame: dict[str, Any]) -> str:
    if "events" in frame:
        shown = " ".join(f"{kind}:{path}@{_z(z)}" for _, kind, path, z in frame["events"])
        what = f"events [{shown}]"
    elif "expired" in frame:
        what = f"expired {frame['expired']:#x}"
    else:
        what = f"reply {frame['xid']} {frame.get('err') or 'ok'}"
    return f"{what} z={_z(frame['zxid'])}"


def client_id(index: int, generation: int) -> int:
    """The temporary id a client connects and opens a session with; once the open is
    answered, ``cid`` is the session id the cluster assigned (as the real client does)."""
    return TEMP_CLIENT_BIT | (generation << 8) | index


class ZClient:
    def __init__(self, world: ZnodeWorld, index: int) -> None:
        self.w = world
        self.index = index
        self.gen = 0
        self.cid = client_id(index, 0)
        self.session = False
        self.timeout = 0
        self.seq = 0
        self.xid = 0
        self.server = index
        self.conn: SimConn | None = None
        self.ready = False  # the hello on conn was answered
        self.connecting = 0  # token of the connection attempt in progress (0: none)
        self.hello: tuple[int, int, bool] | None = None  # (xid, after, with the watch)
        self.last_zxid = 0
        self.write: dict[str, Any] | None = None  # the write in progress (same seq on retry)
        self.attempt = 0  # numbers write attempts, to match their timers
        self.ping: tuple[int, int, int | None, SimConn] | None = None  # xid, sent, session, conn
        self.ping_loop = 0  # token of the running ping loop (0: none)
        self.watch = False  # the application asked for the watch (it is in every hello)
        self.watch_acked = False
        self.watch_xids: set[int] = set()  # watch requests sent, not answered
        self.sync_xids: set[int] = set()  # syncs (linearizable read barriers) not answered
        self.watch_last = 0  # zxid of the last event delivered to the application
        self.validator = WatchValidator(world.oracle, f"client {index}")
        self.silent = False
        self.resumed = False
        self.active_since = 0
        self.backlog: list[tuple[SimConn, dict[str, Any]]] = []
        self.close_at: int | None = None  # when to close the session on purpose
        self.writes_left = True

    def log(self, text: str) -> None:
        self.w.log(f"client {self.index}/{self.cid & ~TEMP_CLIENT_BIT:x} {text}")

    @property
    def active(self) -> bool:
        return not self.silent

    # ------------------------------------------------------------------ connections

    def connect(self) -> None:
        if self.conn is not None or self.connecting or self.silent:
            return
        self.w.token += 1
        token = self.connecting = self.w.token
        node = self.w.voters[self.server % len(self.w.voters)]
        self.w.at(self.w.rng.randint(1, 10), lambda: self._connected(token, node))

    def _connected(self, token: int, node: int) -> None:
        if self.connecting != token or self.silent:
            return
        self.connecting = 0
        conn = self.w.open_conn(self, node)
        if conn is None:  # refused: the node is down
            self.server += 1
            self.w.at(RECONNECT_MS, self.connect)
            return
        self.conn, self.ready = conn, False
        self._hello(conn)

    def _hello(self, conn: SimConn, after: int | None = None) -> None:
        after = self.last_zxid if after is None else after
        xid = self.send({"op": "hello", "client": self.cid, "session": self.session,
                         "after": after, "watches": self._watches()})  # fmt: skip
        self.hello = (xid, after, self.watch_acked)
        self.w.at(HELLO_TIMEOUT_MS, lambda: self._hello_timeout(conn))

    def _watches(self) -> list[tuple[int, str, str]]:
        """Only a watch a node registered (as the real client): one whose own request is still
        in flight is registered by that request when it is sent again."""
        return [(WATCH_ID, "/", "recursive")] if self.watch_acked else []

    def _hello_timeout(self, conn: SimConn) -> None:
        if self.conn is conn and not self.ready and not self.silent:
            self.failover("hello timed out")

    def failover(self, why: str) -> None:
        """Close the connection and try the next node (the pending write is resent there)."""
        conn = self.conn
        if conn is not None:
            self.log(f"fails over from n{conn.node} ({why})")
            self.w.close_conn(conn)
            self.w.stats.client_failovers += 1
        self.conn, self.ready, self.ping, self.hello = None, False, None, None
        self.sync_xids.clear()
        self.server += 1
        self.w.at(RECONNECT_MS, self.connect)

    def conn_lost(self, conn: SimConn) -> None:
        """The node closed the connection (it crashed): notice it and fail over."""
        if self.conn is conn and not self.silent:
            self.failover("connection lost")

    def send(self, req: dict[str, Any]) -> int:
        assert self.conn is not None
        self.xid += 1
        req["xid"] = self.xid
        if self.w.trace is not None:
            extra = f" after={_z(req['after'])}" if req.get("after") else ""
            self.log(f"-> n{self.conn.node} {self.conn} {req['op']} {self.xid}{extra}")
        self.w.to_node(self.conn, req)
        return self.xid

    # ------------------------------------------------------------------ frames from the node

    def on_frame(self, conn: SimConn, frame: dict[str, Any]) -> None:
        if conn is not self.conn or not conn.open:
            return
        if self.silent:
            self.backlog.append((conn, frame))
            return
        zxid: int = frame["zxid"]
        if self.w.trace is not None:
            self.log(f"<- n{conn.node} {conn} {_describe(frame)}")
        if "events" in frame:
            self._events(conn, frame["events"])
        elif "expired" in frame:
            if frame["expired"] == self.cid:
                self.lost("the node pushed its expiry")
        else:
            self._reply(conn, frame)
        # Only a connection whose hello took effect vouches for its zxids: its watches were
        # registered there, so every event up to them came first. (The real client also takes
        # the zxid of a refused hello; planted as "zxid_from_failed_hello", it loses events.)
        if conn.greeted or self.w.zxid_from_failed_hello:
            self.last_zxid = max(self.last_zxid, zxid)
        if conn.watching:
            what = f"a reply from n{conn.node}" if "xid" in frame else f"a push from n{conn.node}"
            self.validator.check_frame(zxid, what)

    def _events(self, conn: SimConn, events: list[tuple[int, str, str, int]]) -> None:
        conn.greeted = True  # events come only from watches registered here
        if not conn.watching:  # replayed by the hello's registration, before its answer
            assert self.hello is not None
            conn.watching = True
            self.validator.arm(self.hello[1])
        floor = self.watch_last
        for wid, kind, path, zxid in events:
            if wid != WATCH_ID or zxid <= floor:
                continue  # delivered before (a replay after a failover)
            self.watch_last = max(self.watch_last, zxid)
            self.w.stats.watch_events += 1
            self.w.stats.resyncs += kind == "resync"
            self.validator.deliver(zxid, kind, path)

    def _reply(self, conn: SimConn, frame: dict[str, Any]) -> None:
        xid, err = frame["xid"], frame.get("err")
        if self.hello is not None and xid == self.hello[0]:
            self._hello_reply(conn, err)
        elif self.ping is not None and xid == self.ping[0]:
            self._ping_reply(err)
        elif self.write is not None and xid == self.write.get("xid"):
            self._write_reply(frame)
        elif xid in self.sync_xids:
            self.sync_xids.discard(xid)
            self.w.stats.reads_served += err is None
            self.w.stats.reads_failed += err is not None
        elif err is None and xid in self.watch_xids:
            self.watch_xids.discard(xid)
            self.watch_acked = True
            if not conn.watching:
                conn.watching = True
                self.validator.arm(frame["zxid"])

    def _hello_reply(self, conn: SimConn, err: str | None) -> None:
        assert self.hello is not None
        if err == "SessionExpired" and self.session:
            after = self.hello[1]
            self.lost("its hello found the session ended", keep=conn)
            self._hello(conn, after)  # again, without the session, from the same zxid
            return
        if err is not None:
            self.failover(f"hello refused: {err}")
            return
        if self.hello[2] and not conn.watching:
            conn.watching = True
            self.validator.arm(self.hello[1])
        self.ready = conn.greeted = True
        self.log(f"connected to n{conn.node}")
        if self.watch and not self.watch_acked:
            self._send_watch()
        if self.write is not None:
            self._send_write()
        self.start_pinging()

    # ------------------------------------------------------------------ pings

    def start_pinging(self) -> None:
        if not self.ping_loop and (self.session or self.watch) and not self.silent:
            self.w.token += 1
            self.ping_loop = self.w.token
            self._ping_cycle(self.ping_loop)

    def _interval(self) -> int:
        return self.timeout // 3 if self.session else WATCH_ONLY_PING_MS

    def _ping_cycle(self, loop: int) -> None:
        if loop != self.ping_loop:
            return
        if self.silent or not (self.session or self.watch):
            self.ping_loop = 0
            return
        if self.ping is not None:  # the last one was not answered in time
            self.failover("ping timed out")
        if self.conn is not None and self.ready:
            sent = self.w.now
            session = self.cid if self.session else None
            self.ping = (self.send({"op": "ping"}), sent, session, self.conn)
        self.w.at(self._interval(), lambda: self._ping_cycle(loop))

    def _ping_reply(self, err: str | None) -> None:
        assert self.ping is not None
        _, sent, session, _ = self.ping
        self.ping = None
        if err == "SessionExpired":
            self.lost("a ping found the session ended")
        elif err is not None:
            self.failover(f"ping refused: {err}")
        elif session is not None and session == self.cid and self.session:
            self.w.stats.pings_answered += 1
            self.w.ping_alive(session, sent)

    # ------------------------------------------------------------------ sessions

    def lost(self, why: str, keep: SimConn | None = None) -> None:
        """The cluster ended our session: start over with a new id (the real client's _lost)."""
        if not self.session:
            return
        if self.write is not None and self.write["op"] == "close_session":
            self._closed()  # our own close took effect (its push can precede its reply)
        else:
            self.log(f"lost its session: {why}")
            self.w.stats.sessions_lost_seen += 1
            self._new_identity()
        if self.conn is not None and self.conn is not keep:
            self.w.close_conn(self.conn)
            self.conn, self.ready, self.ping, self.hello = None, False, None, None
            self.w.at(RECONNECT_MS, self.connect)

    def _closed(self) -> None:
        self.log("closed its session")
        self.w.stats.sessions_closed += 1
        self._new_identity()
        self.writes_left = self.w.rng.random() < 0.5

    def _new_identity(self) -> None:
        self.session = False
        self.write = None  # the write in progress fails with SessionExpired
        self.gen += 1
        self.cid = client_id(self.index, self.gen)
        self.seq = 0
        self.w.at(self.w.rng.randint(20, 200), self.next_write)

    # ------------------------------------------------------------------ writes

    def next_write(self) -> None:
        if self.write is not None or self.silent or self.w.healed or not self.writes_left:
            return
        rng = self.w.rng
        self.seq += 1
        if not self.session:
            self.timeout = rng.randint(*self.w.session_ms)
            req: dict[str, Any] = {"op": "open_session", "timeout_ms": self.timeout}
        elif self.close_at is not None and self.w.now >= self.close_at:
            self.close_at = None
            req = {"op": "close_session"}
        else:
            req = {"op": "write", "data": self._random_op()}
        req["seq"] = self.seq
        self.write = req
        self.w.stats.submitted += 1
        if self.ready:
            self._send_write()
        elif self.conn is None:
            self.connect()

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

    def _send_write(self) -> None:
        assert self.write is not None
        if self.write["op"] == "open_session":
            self.w.session_opening(self)  # the first attempt starts the session's clock
        req = {k: v for k, v in self.write.items() if k != "xid"}
        self.write["xid"] = self.send(req)
        self.attempt += 1
        attempt = self.attempt
        self.w.at(WRITE_TIMEOUT_MS, lambda: self._write_timeout(attempt))

    def _write_timeout(self, attempt: int) -> None:
        if self.write is not None and self.attempt == attempt and not self.silent:
            self.w.stats.retries += 1
            self.failover("write timed out")

    def _write_reply(self, frame: dict[str, Any]) -> None:
        assert self.write is not None
        err, op = frame.get("err"), self.write["op"]
        if err == "Unavailable":
            self.failover("the node cannot take writes")
            return
        if err == "SessionExpired" and self.session:
            self.lost("a write found the session ended")
            return
        self.write = None
        if op == "open_session" and err is None:
            self.cid = frame["ok"]["session"]
            self.session = True
            self.w.session_opened(self)
            self.start_pinging()
        elif op == "close_session":
            self._closed()
            return
        else:
            self.w.stats.completed += 1
        self.w.at(self.w.rng.randint(10, 150), self.next_write)

    # ------------------------------------------------------------------ the watch

    def add_watch(self) -> None:
        if self.watch or self.silent:
            return
        self.watch = True
        if self.ready:
            self._send_watch()
        self.start_pinging()

    def _send_watch(self) -> None:
        xid = self.send({"op": "watch", "wid": WATCH_ID, "path": "/", "mode": "recursive",
                         "after": None})  # fmt: skip
        self.watch_xids.add(xid)

    # ------------------------------------------------------------------ reads

    def sync_loop(self) -> None:
        """Now and then a linearizable read barrier: its answer, like every answer, must come
        after the events it reflects (J1)."""
        if self.ready and not self.silent and len(self.sync_xids) < 3:
            self.sync_xids.add(self.send({"op": "sync"}))
        if not self.w.healed:
            self.w.at(self.w.rng.randint(100, 600), self.sync_loop)

    # ------------------------------------------------------------------ SIGSTOP, SIGCONT

    def go_silent(self) -> None:
        if self.silent:
            return
        self.log("goes silent")
        self.silent = True
        self.connecting = 0
        self.w.client_silent(self)

    def resume(self) -> None:
        if not self.silent:
            return
        self.log("resumes")
        self.silent, self.resumed, self.active_since = False, True, self.w.now
        backlog, self.backlog = self.backlog, []
        for conn, frame in backlog:
            self.on_frame(conn, frame)
        self.ping = None
        if self.conn is None or not self.conn.open:
            self.conn, self.ready, self.hello = None, False, None
            self.connect()
        elif self.write is not None:
            self.failover("its write timed out while it was stopped")
        self.ping_loop = 0
        self.start_pinging()
        self.w.at(1, self.next_write)
