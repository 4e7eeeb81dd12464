"""The client side of a node: requests in, answers and watch events out, over framed msgpack maps.

A request is ``{"xid": n, "op": name, ...}``; the answer is ``{"xid": n, "ok": value, "zxid": z}``
or ``{"xid": n, "err": code, "msg": text, "zxid": z}``, where ``zxid`` is the last transaction
the serving node has applied. Frames without ``xid`` are pushed by the node: ``{"events":
[[wid, kind, path, zxid], ...], "zxid": z}`` for watches, ``{"expired": session}`` when the
connection's session ended.

Ordering, which the watch guarantees rest on: events are pushed while the command that caused
them is applied, before that command's reply and before any read that could reflect it, all on
the one connection (TCP keeps the order). So once a client has seen zxid ``z`` in any frame, it
has seen every event up to ``z`` of every watch it had registered on that connection; on
failover it re-registers its watches "after z" in its ``hello``, and the new node replays the
missed ones from its event history (or says ``resync`` when that history is gone).

Writes are proposed as commands carrying the client's ``(client, seq)``, so a retry after a
lost answer takes effect once and gets the first attempt's answer. Anything malformed is
answered with ``BadArguments`` (or the connection closed, for bytes that are not a request).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from paxctl.core.codec import MAX_UINT
from paxctl.core.types import Command
from paxctl.protocol.framing import MAX_FRAME
from paxctl.server.transport import FramedProtocol
from paxctl.server.watches import Event
from paxctl.server.zxid import slot_of
from paxctl.statemachine.errors import BadArguments, SessionExpired, ZnodeError
from paxctl.statemachine.machine import Outcome
from paxctl.statemachine.ops import (
    FIRST_CLIENT_ID,
    CloseSession,
    Op,
    OpenSession,
    decode_op,
    encode_command,
    is_session_id,
)
from paxctl.statemachine.paths import validate_path

if TYPE_CHECKING:
    from paxctl.server.node_server import NodeServer
    from paxctl.statemachine.tree import DataTree

log = logging.getLogger("paxctl.clients")

READ_KINDS = ("get", "exists", "children", "stat", "ephemerals", "sessions")
WATCH_MODES = ("data", "children", "persistent", "recursive")
#: Which one-shot watch a read may leave behind.
_READ_WATCH = {"get": "data", "exists": "data", "children": "children"}
#: Most watches one hello may re-register.
MAX_WATCHES = 100_000


def stat_reply(tree: DataTree, path: str) -> dict[str, Any]:
    """ZooKeeper's stat fields, plus ``kind`` ("container" or "ttl", with ``ttl_ms``) for the
    kinds a stat cannot otherwise show (ephemerals have ``ephemeralOwner``)."""
    doc: dict[str, Any] = dict(tree.stat(path).to_dict())
    kind, ttl_ms = tree.kind(path)
    if kind in ("container", "ttl"):
        doc["kind"] = kind
        if kind == "ttl":
            doc["ttl_ms"] = ttl_ms
    return doc


def to_wire(value: Any) -> Any:
    """Results as plain msgpack values (a Stat becomes ZooKeeper's field map)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


@dataclass
class ClientConn:
    """What a node knows about one client connection after its hello."""

    client: int
    session: bool = False  # the hello claimed an open session (checked against the table)
    opening: tuple[int, int] | None = None  # (seq, granted ms) of its open_session in flight


def _uint(x: Any, what: str) -> int:
    if type(x) is not int or not 0 <= x <= MAX_UINT:
        raise ValueError(f"{what} must be a non-negative integer")
    return x


def _wid(x: Any) -> int:
    return _uint(x, "watch id")


class ClientService:
    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self._pending: dict[tuple[int, int], tuple[FramedProtocol, int]] = {}
        self._by_client: dict[int, FramedProtocol] = {}

    # ------------------------------------------------------------------ plumbing

    def _push(self, conn: FramedProtocol, doc: dict[str, Any]) -> None:
        """Send one frame; a client too far behind is cut off rather than silently skipped
        (it reconnects and resumes its watches from the last zxid it saw)."""
        if not conn.send(msgpack.packb(doc, use_bin_type=True)) and conn.open:
            conn.close("client cannot keep up; it will resume from its last zxid elsewhere")

    def _reply(
        self,
        conn: FramedProtocol,
        xid: int,
        ok: Any = None,
        err: str | None = None,
        msg: str = "",
        index: int | None = None,
    ) -> None:
        doc: dict[str, Any] = {"xid": xid, "zxid": self.server.applied_zxid}
        if err is None:
            doc["ok"] = to_wire(ok)
        else:
            doc["err"], doc["msg"] = err, msg
            if index is not None:  # the failing operation of a multi
                doc["index"] = index
        payload = msgpack.packb(doc, use_bin_type=True)
        if len(payload) > MAX_FRAME:
            # Say so, rather than drop a frame the client would wait for until its timeout
            # (e.g. the stats of ~26,000 children); clients can ask in smaller pieces.
            doc.pop("ok", None)
            doc["err"] = "DataTooLarge"
            doc["msg"] = f"the reply ({len(payload)} bytes) exceeds the {MAX_FRAME}-byte limit"
            payload = msgpack.packb(doc, use_bin_type=True)
        if not conn.send(payload) and conn.open:
            conn.close("client cannot keep up; it will resume from its last zxid elsewhere")

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None:
        """Deliver watch events (``conn`` is a connection the registry was given)."""
        if events and isinstance(conn, FramedProtocol):
            wire = [[wid, e.kind, e.path, e.zxid] for wid, e in events]
            self._push(conn, {"events": wire, "zxid": self.server.applied_zxid})

    def session_closed(self, session: int) -> None:
        """The log ended ``session``: tell its connection here, if any."""
        conn = self._by_client.get(session)
        if conn is not None and conn.open:
            self._push(conn, {"expired": session, "zxid": self.server.applied_zxid})

    def ping_answered(self, token: Any, alive: bool) -> None:
        conn, xid, session = token
        if conn.open:
            if alive or not session:
                self._reply(conn, xid, None)
            else:
                self._reply(conn, xid, err="SessionExpired", msg="the session has expired")

    def on_lost(self, conn: FramedProtocol) -> None:
        self.server.connection_closed()
        for key in [k for k, (c, _) in self._pending.items() if c is conn]:
            del self._pending[key]
        self.server.watches.drop(conn)
        self.server.keeper.discard(lambda token: token[0] is conn)
        state = conn.state
        if isinstance(state, ClientConn) and self._by_client.get(state.client) is conn:
            del self._by_client[state.client]

    def on_payload(self, conn: FramedProtocol, payload: bytes) -> None:
        try:
            req = msgpack.unpackb(payload, raw=False)
            xid = req["xid"]
            op = req["op"]
            if type(xid) is not int or not isinstance(op, str):
                raise TypeError
        except Exception:  # bytes that are not a request at all
            conn.close("malformed client request")
            return
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self._reply(conn, xid, err="BadArguments", msg=f"unknown operation {op!r}")
            return
        state = conn.state
        if isinstance(state, ClientConn) and state.session:
            self.server.keeper.touch(state.client)  # every request is a heartbeat
        try:
            handler(conn, xid, req)
        except ZnodeError as exc:
            self._reply(conn, xid, err=exc.code, msg=str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(conn, xid, err="BadArguments", msg=f"bad {op} request: {exc}")

    @staticmethod
    def _client(conn: FramedProtocol) -> ClientConn:
        if not isinstance(conn.state, ClientConn):
            raise ValueError("say hello (with a client id) first")
        return conn.state

    # ------------------------------------------------------------------ sessions

    def _op_hello(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        """Name the client; with ``session``, resume it (and its watches) on this node."""
        client = req["client"]
        if type(client) is not int or not FIRST_CLIENT_ID <= client <= MAX_UINT:
            raise ValueError(f"client id must be an integer in [{FIRST_CLIENT_ID}, 2**63)")
        session = req.get("session", False)
        after = _uint(req.get("after", 0), "after")
        watches = req.get("watches", [])
        if type(session) is not bool or type(watches) is not list or len(watches) > MAX_WATCHES:
            raise ValueError("session must be a bool and watches a list")
        if session and not is_session_id(client):  # sessions are named by the cluster
            raise ValueError("a session id is one the cluster assigned (below 2**62)")
        parsed = [self._parse_watch(w) for w in watches]

        def resume() -> None:
            # Caught up with everything the client saw: its session, if it has one, is known.
            if not conn.open:
                return
            if session and not self.server.machine.has_session(client):
                self._reply(conn, xid, err="SessionExpired", msg=f"session {client:#x} ended")
                return
            conn.state = ClientConn(client, session)
            self._by_client[client] = conn
            for wid, path, mode in parsed:
                self._register(conn, wid, path, mode, after)
            self._reply(conn, xid, {"node": self.server.config.node_id})

        self.server.when_applied(slot_of(after), resume, conn)

    def _op_open_session(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        state = self._client(conn)
        timeout = _uint(req.get("timeout_ms", 10_000), "timeout_ms")
        lo, hi = self.server.config.min_session_ms, self.server.config.max_session_ms
        granted = min(max(timeout, lo), hi)
        state.opening = (req["seq"], granted)
        self._propose(conn, xid, req, OpenSession(granted))

    def _op_close_session(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        state = self._client(conn)
        self._propose(conn, xid, req, CloseSession(state.client))

    def _op_ping(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        """Answered once the leader confirmed it: for a session, that it is alive; for a
        watcher without one, that this node is still in touch with the cluster."""
        state = self._client(conn)
        if state.session and not self.server.machine.has_session(state.client):
            raise SessionExpired(f"no open session {state.client:#x}")
        session = state.client if state.session else 0
        self.server.keeper.ping(session, (conn, xid, state.session))

    # ------------------------------------------------------------------ writes

    def _op_status(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        self._reply(conn, xid, self.server.status())

    def _op_write(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        raw = req["data"]
        if type(raw) is not bytes:
            raise ValueError("a write carries an encoded operation")
        op = decode_op(raw)  # BadArguments for anything malformed, before it reaches the log
        if isinstance(op, OpenSession | CloseSession):
            raise BadArguments("sessions are opened and closed with their own requests")
        self._propose(conn, xid, req, op)

    def _propose(self, conn: FramedProtocol, xid: int, req: dict[str, Any], op: Op) -> None:
        client, seq = self._client(conn).client, req["seq"]
        if type(seq) is not int or not 1 <= seq <= MAX_UINT:
            raise ValueError(f"a write needs 1 <= seq <= {MAX_UINT}")
        cmd = Command(client, seq, encode_command(int(time.time() * 1000), op))
        if self.server.machine.is_applied(client, seq):
            self._answer(conn, xid, self.server.machine.cached(client, seq))
            return
        self._pending[(client, seq)] = (conn, xid)
        if not self.server.propose(cmd):
            del self._pending[(client, seq)]
            self._reply(conn, xid, err="Unavailable", msg="the node is overloaded; retry")

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
        waiting = self._pending.pop((cmd.client, cmd.seq), None)
        if waiting is None:
            return
        conn, xid = waiting
        state = conn.state
        if isinstance(state, ClientConn) and state.opening and state.opening[0] == cmd.seq:
            granted, state.opening = state.opening[1], None
            if outcome is not None and outcome.ok and type(outcome.value) is int:
                # The cluster named the new session: the connection speaks for it from now on.
                if self._by_client.get(state.client) is conn:
                    del self._by_client[state.client]
                state.client, state.session = outcome.value, True
                self._by_client[state.client] = conn
                self._reply(conn, xid, {"session": state.client, "timeout_ms": granted})
                return
        self._answer(conn, xid, outcome)

    def _answer(self, conn: FramedProtocol, xid: int, outcome: Outcome | None) -> None:
        if outcome is None:  # applied long ago; its answer is no longer kept
            self._reply(conn, xid, err="Indeterminate", msg="applied earlier; result not kept")
        elif outcome.ok:
            self._reply(conn, xid, outcome.value)
        else:
            self._reply(
                conn,
                xid,
                err=outcome.error_code,
                msg=outcome.error_message,
                index=outcome.error_index,
            )

    # ------------------------------------------------------------------ reads and watches

    def _op_read(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        kind = req["kind"]
        if kind not in READ_KINDS:
            raise ValueError(f"unknown read {kind!r}")
        path = validate_path(req["path"] if kind not in ("ephemerals", "sessions") else "/")
        with_stats = bool(req.get("stats", False))
        wid = req.get("watch")
        if wid is not None:
            wid = _wid(wid)
            if kind not in _READ_WATCH:
                raise ValueError(f"a {kind} read cannot set a watch")
        session = _uint(req.get("session", 0), "session")

        def serve() -> None:
            machine = self.server.machine
            tree = machine.tree

            def stat_of(p: str) -> dict[str, Any]:
                return stat_reply(tree, p)

            try:
                if kind == "get":
                    data, _ = tree.get(path)
                    result: Any = {"data": data, "stat": stat_of(path)}
                elif kind == "exists":
                    result = stat_of(path) if tree.exists(path) is not None else None
                elif kind == "stat":
                    result = stat_of(path)
                elif kind == "ephemerals":
                    result = tree.ephemerals(session)
                elif kind == "sessions":
                    table = machine.sessions()
                    result = [
                        {"session": s, "timeout_ms": t, "ephemerals": len(tree.ephemerals(s))}
                        for s, t in sorted(table.items())
                    ]
                else:
                    names = tree.children(path)
                    result = {"children": names}
                    if with_stats:
                        result["stats"] = {n: stat_of(f"{path.rstrip('/')}/{n}") for n in names}
            except ZnodeError as exc:
                self._reply(conn, xid, err=exc.code, msg=str(exc))
                return
            if wid is not None:  # atomic with the read: the watch sees every later change
                self._register(conn, wid, path, _READ_WATCH[kind], self.server.applied_zxid)
            self._reply(conn, xid, result)

        self._when_consistent(conn, xid, req, serve)

    def _parse_watch(self, w: Any) -> tuple[int, str, str]:
        if type(w) is not list or len(w) != 3:
            raise ValueError("a watch is [wid, path, mode]")
        wid, path, mode = w
        if mode not in WATCH_MODES:
            raise ValueError(f"watch mode must be one of {', '.join(WATCH_MODES)}")
        return _wid(wid), validate_path(path), mode

    def _register(self, conn: FramedProtocol, wid: int, path: str, mode: str, after: int) -> None:
        if not conn.open:  # it closed while the read waited: on_lost already dropped its watches
            return
        applied = self.server.applied_zxid
        now = self.server.watches.register(conn, wid, path, mode, after, applied)
        self.push_events(conn, [(wid, e) for e in now])

    def _op_watch(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        """Register a watch without a read; ``after`` replays history from that zxid."""
        self._client(conn)
        wid, path, mode = self._parse_watch([req["wid"], req["path"], req["mode"]])
        after = req.get("after")
        after = self.server.applied_zxid if after is None else _uint(after, "after")
        self._register(conn, wid, path, mode, after)
        self._reply(conn, xid, None)

    def _op_unwatch(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        self._reply(conn, xid, self.server.watches.remove(conn, _wid(req["wid"])))

    def _op_sync(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        self._when_consistent(conn, xid, {}, lambda: self._reply(conn, xid, None))

    def _when_consistent(
        self, conn: FramedProtocol, xid: int, req: dict[str, Any], serve: Any
    ) -> None:
        """Serve linearizably (read-index), or locally but never older than the client saw."""
        if req.get("local"):
            min_zxid = req.get("min_zxid", 0)
            if type(min_zxid) is not int or min_zxid < 0:
                raise ValueError("min_zxid must be a non-negative integer")
            self.server.when_applied(slot_of(min_zxid), serve, conn)
            return

        def on_index(index: int | None) -> None:
            if index is None:
                self._reply(conn, xid, err="Unavailable", msg="no leader to confirm the read")
            else:
                self.server.when_applied(index, serve, conn)

        self.server.read_index(on_index)
