"""The client side of the node engine: typed requests in, typed replies and pushes out.

Pure (no sockets, no clock): connections are numbers the shell picks, requests arrive decoded
(``protocol/codec.py``: what reaches a handler was checked field by field), and every answer is a
``Frame`` appended to the engine's ordered output. Requests are dispatched on their type.

Ordering, which the watch guarantees rest on: events are pushed while the command that caused
them is applied, before that command's reply and before any read that could reflect it, all on
the one connection. So once a client has seen zxid ``z`` in any frame, it has seen every event up
to ``z`` of every watch it had registered on that connection; on failover it re-registers its
watches "after z" in its hello, and the new node replays the missed ones from its event history
(or says ``resync`` when that history is gone).

Writes are proposed as commands carrying the client's ``(client, seq)``, stamped with this
node's wall clock (the leader stamps them again: ``NodeEngine.receive``), so a retry after a lost
answer takes effect once and gets the first attempt's answer. A ``seq`` too far ahead of the
client's last is refused here already (the state machine refuses it again, at apply). A
one-shot write (``Once``: one round, no session) comes only from a connection without a
session, so it is proposed under the temporary id its hello's secret proved.

Who a connection speaks for is proven, never claimed (protocol/secrets.py): its hello carries
the client's secret, a session is resumed only with the secret it was opened with (the node
waits until it has applied the session's open, whose zxid is the session id, then compares the
hashes), and a connection without a session speaks under the temporary id its secret derives.
A refused hello changes nothing: no heartbeat, no registration, the session untouched.

What waits is bounded (README "Limits"): a hello or local read naming a zxid not applied here
waits only for a slot that exists. A slot this node does not know is chosen may have been made up
(a session id, an ``after``): the leader's read index, confirmed by a quorum after the request
came, covers every slot chosen before it, and a client saw only chosen zxids, so a slot beyond
that index is one no client saw and is refused (else, on a quiet cluster, it waited for ever).
It waits only if its slot is at most ``MAX_SLOTS_AHEAD`` beyond the highest slot this node knows
is chosen, while the connection has fewer than ``MAX_WAITERS_PER_CONNECTION`` such waiters, and
only one hello per connection at a time; otherwise it is refused (``Unavailable``: the
client tries another node). The reply that accepts a hello says so (``Frame.greets``): only then
does the shell lift its pre-hello frame limit and hello deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paxctl.core.types import Command
from paxctl.protocol.codec import session_granted_doc
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.messages import (
    READ_WATCH_MODE,
    CloseSessionRequest,
    Failed,
    FromServer,
    Hello,
    MembersRequest,
    Ok,
    OpenSessionRequest,
    Ping,
    QueueWatches,
    ReadKind,
    ReadRequest,
    ReconfigRequest,
    Request,
    SessionEnded,
    SessionGranted,
    StatusRequest,
    SyncRequest,
    UnwatchRequest,
    WatchEvent,
    WatchEvents,
    WatchRequest,
    WriteRequest,
)
from paxctl.protocol.secrets import session_hash, temporary_id
from paxctl.server.configuration import (
    ChangeNumbers,
    change_for,
    config_of,
    members_value,
    proven,
)
from paxctl.server.queued import queue_answer
from paxctl.server.watches import Event, ReplayBudget
from paxctl.server.zxid import slot_of
from paxctl.statemachine.errors import BadArguments, SessionExpired, TooManyWatches, ZnodeError
from paxctl.statemachine.machine import MAX_SEQ_AHEAD, Outcome
from paxctl.statemachine.ops import (
    CloseSession,
    Once,
    Op,
    OpenSession,
    encode_command,
    is_session_id,
)

if TYPE_CHECKING:
    from paxctl.server.engine import NodeEngine
    from paxctl.statemachine.tree import DataTree


#: Slots beyond the highest this node knows is chosen that a hello or read may wait for. A
#: client's zxids come from some node's applied state, so an honest one is at most as far ahead
#: as this node lags behind a peer it has not heard from yet (~a million slots: hours of writes);
#: further is made up (2**62), and would park its request for ever.
MAX_SLOTS_AHEAD = 1 << 20

#: Hellos and reads of one connection that may wait for a slot to be applied: a client that
#: waits for its answers has a few; each waiter holds its decoded request (a hello may carry
#: 100,000 watches), and a node that never answers them never sees backpressure.
MAX_WAITERS_PER_CONNECTION = 1000


@dataclass(frozen=True, slots=True)
class Frame:
    """A reply or push for the client connection numbered ``conn``; ``greets`` is set (to
    whether it resumed a session) on the reply that accepts the connection's hello."""

    conn: int
    frame: FromServer
    greets: bool | None = None


@dataclass
class ClientConn:
    """What a node knows about one client connection (``client`` is None before its hello)."""

    client: int | None = None
    session: bool = False  # the hello resumed an open session, proving its secret
    opening: tuple[int, int] | None = None  # (seq, granted ms) of its open_session in flight
    secret_hash: bytes = field(default=b"", repr=False)  # a session it opens keeps this
    hello_waiting: bool = False  # a hello waits for its slot: another is refused meanwhile


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


class ClientRequests:
    """Client connections of one node; also the replica's ``Sink`` (events, answers, ends)."""

    def __init__(self, engine: NodeEngine) -> None:
        self.e = engine
        self._conns: dict[int, ClientConn] = {}
        self._by_client: dict[int, int] = {}
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}  # (client, seq) -> conn, xid
        self._commands: dict[tuple[int, int], Command] = {}  # the client writes among them
        self._queued: dict[tuple[int, int], QueueWatches] = {}  # pending creates that asked
        self._read_waiters: dict[int, Callable[[int | None], None]] = {}
        self._next_ctx = 1
        self._wall_ms = 0  # the clock of the request being handled
        handlers: dict[type[Any], Callable[[int, Any], None]] = {
            Hello: self._hello,
            OpenSessionRequest: self._open_session,
            CloseSessionRequest: self._close_session,
            Ping: self._ping,
            StatusRequest: self._status,
            WriteRequest: self._write,
            ReadRequest: self._read,
            WatchRequest: self._watch,
            UnwatchRequest: self._unwatch,
            SyncRequest: self._sync,
            MembersRequest: self._members,
            ReconfigRequest: self._reconfig,
        }
        self._handlers = handlers
        self._changes = ChangeNumbers(engine.config.incarnation)

    # ------------------------------------------------------------------ connections

    def opened(self, conn: int) -> None:
        self._conns.setdefault(conn, ClientConn())

    def is_open(self, conn: int) -> bool:
        return conn in self._conns

    def closed(self, conn: int) -> None:
        state = self._conns.pop(conn, None)
        for key in [k for k, (c, _) in self._pending.items() if c == conn]:
            del self._pending[key]
            self._commands.pop(key, None)
            self._queued.pop(key, None)
        self.e.replica.watches.drop(conn)
        self.e.replica.keeper.discard(lambda token: token[0] == conn)
        self.e.driver.forget(conn)
        client = state.client if state is not None else None
        if client is not None and self._by_client.get(client) == conn:
            del self._by_client[client]

    # ------------------------------------------------------------------ frames

    def send(self, conn: int, frame: FromServer, greets: bool | None = None) -> None:
        if conn in self._conns:
            self.e.driver.out.append(Frame(conn, frame, greets))

    def reply(self, conn: int, xid: int, value: Any = None) -> None:
        self.send(conn, Ok(xid, self.e.replica.applied_zxid, to_wire(value)))

    def fail(
        self, conn: int, xid: int, code: ErrorCode | str, message: str, index: int | None = None
    ) -> None:
        self.send(conn, Failed(xid, self.e.replica.applied_zxid, code, message, index))

    # ------------------------------------------------------------------ the replica's Sink

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None:
        """Deliver watch events (``conn`` is a connection the registry was given)."""
        if events and isinstance(conn, int):
            wire = tuple(WatchEvent(wid, e.kind, e.path, e.zxid) for wid, e in events)
            self.send(conn, WatchEvents(self.e.replica.applied_zxid, wire))

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
        self.e.observer.write_done(cmd, outcome, fresh)
        waiting = self._pending.pop((cmd.client, cmd.seq), None)
        queue = self._queued.pop((cmd.client, cmd.seq), None)
        if waiting is None:
            return
        self._commands.pop((cmd.client, cmd.seq), None)
        conn, xid = waiting
        state = self._conns.get(conn)
        if state is not None and state.opening and state.opening[0] == cmd.seq:
            granted, state.opening = state.opening[1], None
            if outcome is not None and outcome.ok and type(outcome.value) is int:
                # The cluster named the new session: the connection speaks for it from now on.
                if state.client is not None and self._by_client.get(state.client) == conn:
                    del self._by_client[state.client]
                state.client, state.session = outcome.value, True
                self._by_client[state.client] = conn
                self.reply(conn, xid, session_granted_doc(SessionGranted(state.client, granted)))
                return
        self._answer(conn, xid, outcome, queue)

    def change_done(self, cmd: Command, slot: int) -> None:
        """A configuration change (chosen at ``slot``) was applied: answer the client that
        asked for it here, from the outcome every replica judged."""
        waiting = self._pending.pop((cmd.client, cmd.seq), None)
        if waiting is None:
            return
        conn, xid = waiting
        outcome = self.e.node.members.outcomes.get(cmd.seq)
        if outcome is None:  # judged so long ago that the outcome is forgotten
            self.fail(conn, xid, ErrorCode.INDETERMINATE, "the change's outcome is not kept")
        elif outcome:
            self.fail(conn, xid, ErrorCode.RECONFIG_REFUSED, outcome)
        else:
            self.reply(conn, xid, members_value(self.e.node, config_of(self.e.node, slot)))

    def session_closed(self, session: int) -> None:
        """The log ended ``session``: tell its connection here, if any."""
        self.e.observer.session_closed(session)
        conn = self._by_client.get(session)
        if conn is not None:
            self.send(conn, SessionEnded(self.e.replica.applied_zxid, session))

    def ping_answered(self, token: Any, alive: bool) -> None:
        conn, xid, session = token
        if alive or not session:
            self.reply(conn, xid)
        else:
            self.fail(conn, xid, ErrorCode.SESSION_EXPIRED, "the session has expired")

    def index_ready(self, ctx: int, index: int | None) -> None:
        waiter = self._read_waiters.pop(ctx, None)
        if waiter is not None:
            waiter(index)

    # ------------------------------------------------------------------ dispatch

    def handle(self, conn: int, req: Request, wall_ms: int) -> None:
        state = self._conns.get(conn)
        if state is None:
            return  # the connection closed
        if state.session and state.client is not None:
            self.e.replica.keeper.touch(state.client)  # every request is a heartbeat
        self._wall_ms = wall_ms
        try:
            self._handlers[type(req)](conn, req)
        except ZnodeError as exc:
            self.fail(conn, req.xid, exc.code, str(exc))

    def _client(self, conn: int) -> ClientConn:
        state = self._conns[conn]
        if state.client is None:
            raise BadArguments("say hello (with a client id) first")
        return state

    # ------------------------------------------------------------------ sessions

    def _hello(self, conn: int, req: Hello) -> None:
        """Name the client; with ``session``, resume it (and its watches) on this node, once its
        secret is proven; without, speak under the temporary id its secret derives."""
        if req.session and not is_session_id(req.client):  # sessions are named by the cluster
            raise BadArguments("a session id is one the cluster assigned (below 2**62)")
        if not req.session and req.client != temporary_id(req.secret):
            raise BadArguments("without a session, a client's id is the one its secret derives")
        if self._conns[conn].hello_waiting:
            message = "a hello is already waiting on this connection: wait for its answer"
            self.fail(conn, req.xid, ErrorCode.BAD_ARGUMENTS, message)
            return
        proof = session_hash(req.secret)

        def resume() -> None:
            # Caught up with everything the client saw, and with the session's own open (its id
            # is that command's zxid): a session unknown here now is unknown to the cluster.
            state = self._conns.get(conn)
            if state is None:
                return
            state.hello_waiting = False
            machine = self.e.replica.machine
            if req.session and not machine.has_session(req.client):
                message = f"session {req.client:#x} ended"
                self.fail(conn, req.xid, ErrorCode.SESSION_EXPIRED, message)
                return
            if req.session and not machine.session_proven(req.client, proof):
                message = f"session {req.client:#x} was opened with another secret"
                self.fail(conn, req.xid, ErrorCode.AUTH_FAILED, message)
                return
            if not self._watch_room(conn, [w.wid for w in req.watches]):
                self.fail(conn, req.xid, ErrorCode.TOO_MANY_WATCHES, self._too_many())
                return
            if state.client is not None and self._by_client.get(state.client) == conn:
                del self._by_client[state.client]  # a second hello renames the connection
            state.client, state.session, state.secret_hash = req.client, req.session, proof
            self._by_client[req.client] = conn
            budget = ReplayBudget()  # the hello's watches share one replay budget
            for w in req.watches:
                self._register(conn, w.wid, w.path, str(w.mode), req.after, budget)
            ok = Ok(req.xid, self.e.replica.applied_zxid, {"node": self.e.id})
            self.send(conn, ok, greets=req.session)  # the shell lifts its pre-hello limits

        def refused() -> None:
            state = self._conns.get(conn)
            if state is not None:
                state.hello_waiting = False

        def beyond(index: int) -> tuple[ErrorCode, str]:
            if opened > index:  # its id is its open's zxid, which no leader ever chose
                return ErrorCode.SESSION_EXPIRED, f"session {req.client:#x} unknown"
            return ErrorCode.BAD_ARGUMENTS, _ahead(req.after, index)

        opened = slot_of(req.client) if req.session else 0
        self._conns[conn].hello_waiting = True  # until resume() or refused()
        self._park(conn, req.xid, max(slot_of(req.after), opened), resume, beyond, refused)

    def _park(
        self,
        conn: int,
        xid: int,
        slot: int,
        serve: Callable[[], None],
        beyond: Callable[[int], tuple[ErrorCode, str]],
        refused: Callable[[], None] | None = None,
    ) -> None:
        """Serve once ``slot`` (one the client named) is applied here: now, or later if it
        exists and may wait (``MAX_SLOTS_AHEAD``, ``MAX_WAITERS_PER_CONNECTION``); else refuse
        (``refused`` is told), with ``beyond(index)``'s error for a slot past the leader's
        read index: one no client saw, which a quiet cluster would never apply."""
        driver = self.e.driver

        def refuse(code: ErrorCode, message: str) -> None:
            if refused is not None:
                refused()
            self.fail(conn, xid, code, message)

        def wait() -> None:
            if driver.waiting_of(conn) >= MAX_WAITERS_PER_CONNECTION:
                message = (
                    f"a connection may have at most {MAX_WAITERS_PER_CONNECTION} hellos and "
                    "reads waiting for a zxid; wait for their answers"
                )
                refuse(ErrorCode.UNAVAILABLE, message)
            else:
                driver.when_applied(slot, serve, conn)

        def on_index(index: int | None) -> None:
            if conn not in self._conns:
                return  # closed meanwhile
            if slot <= driver.known_chosen():
                wait()  # chosen: it exists
            elif index is None:
                message = f"no leader confirmed that slot {slot} exists; try another node"
                refuse(ErrorCode.UNAVAILABLE, message)
            elif slot > index:
                refuse(*beyond(index))
            else:
                wait()  # proposed before the read index: it will be chosen

        if slot <= self.e.node.learner.applied:
            serve()
            return
        known = driver.known_chosen()
        if slot > known + MAX_SLOTS_AHEAD:
            message = (
                f"the zxid names slot {slot}, more than {MAX_SLOTS_AHEAD} slots beyond slot "
                f"{known}, the highest this node knows is chosen; try another node"
            )
            refuse(ErrorCode.UNAVAILABLE, message)
        elif slot <= known:
            wait()
        else:
            self._ask_index(on_index)

    def _open_session(self, conn: int, req: OpenSessionRequest) -> None:
        state = self._client(conn)
        assert state.client is not None
        lo, hi = self.e.config.min_session_ms, self.e.config.max_session_ms
        granted = min(max(req.timeout_ms, lo), hi)
        before, state.opening = state.opening, (req.seq, granted)
        try:
            self._propose(conn, req.xid, req.seq, OpenSession(granted, state.secret_hash))
        except ZnodeError:
            state.opening = before  # e.g. an open with this seq is still in flight
            raise

    def _close_session(self, conn: int, req: CloseSessionRequest) -> None:
        state = self._client(conn)
        assert state.client is not None
        self._propose(conn, req.xid, req.seq, CloseSession(state.client))

    def _ping(self, conn: int, req: Ping) -> None:
        """Answered once the leader confirmed it: for a session, that it is alive; for a
        watcher without one, that this node is still in touch with the cluster."""
        state = self._client(conn)
        assert state.client is not None
        if state.session and not self.e.replica.machine.has_session(state.client):
            raise SessionExpired(f"no open session {state.client:#x}")
        session = state.client if state.session else 0
        self.e.replica.keeper.ping(session, (conn, req.xid, state.session))

    def _status(self, conn: int, req: StatusRequest) -> None:
        self.reply(conn, req.xid, self.e.status())

    # ------------------------------------------------------------------ the configuration

    def _members(self, conn: int, req: MembersRequest) -> None:
        if not self.e.node.members.known:
            message = "this node has not learned the cluster's configuration yet; try another"
            self.fail(conn, req.xid, ErrorCode.UNAVAILABLE, message)
            return
        self.reply(conn, req.xid, members_value(self.e.node))

    def _reconfig(self, conn: int, req: ReconfigRequest) -> None:
        """Propose the change once its proof holds; answered by ``change_done``."""
        if not proven(self.e.config.secret, req):
            message = "the change's proof does not match the cluster secret; nothing was done"
            self.fail(conn, req.xid, ErrorCode.AUTH_FAILED, message)
            return
        members = self.e.node.members
        if not members.known:
            message = "this node has not learned the cluster's configuration yet; try another"
            self.fail(conn, req.xid, ErrorCode.UNAVAILABLE, message)
            return
        if self.e.leaderless:
            self.fail(conn, req.xid, ErrorCode.UNAVAILABLE, self.e.leaderless_message())
            return
        base = members.latest.epoch if req.base == -1 else req.base
        cmd = self._changes.command(change_for(req, base))
        self.e.observer.submitted(cmd)
        self._pending[(cmd.client, cmd.seq)] = (conn, req.xid)
        if not self.e.node.propose(cmd):
            del self._pending[(cmd.client, cmd.seq)]
            self.fail(conn, req.xid, ErrorCode.UNAVAILABLE, "the node is overloaded; retry")

    # ------------------------------------------------------------------ writes

    def _write(self, conn: int, req: WriteRequest) -> None:
        if isinstance(req.op, OpenSession | CloseSession):
            raise BadArguments("sessions are opened and closed with their own requests")
        if isinstance(req.op, Once) and self._client(conn).session:
            # Under the temporary id its secret proves, never a session's (nor another's).
            raise BadArguments("a connection with a session writes in it, not one-shot")
        self._propose(conn, req.xid, req.seq, req.op, req.queue)

    def _propose(
        self, conn: int, xid: int, seq: int, op: Op, queue: QueueWatches | None = None
    ) -> None:
        client = self._client(conn).client
        assert client is not None
        if not self.e.replica.machine.seq_in_window(client, seq):
            ahead = f"more than {MAX_SEQ_AHEAD} ahead of the client's last"
            raise BadArguments(f"seq {seq} is {ahead}; nothing was done")
        cmd = Command(client, seq, encode_command(self._wall_ms, op))
        self.e.observer.submitted(cmd)
        machine = self.e.replica.machine
        if machine.is_applied(client, seq):
            self._answer(conn, xid, machine.cached(client, seq), queue)
            return
        if self.e.leaderless and (client, seq) not in self._pending:
            self.fail(conn, xid, ErrorCode.UNAVAILABLE, self.e.leaderless_message())
            return
        earlier = self._pending.get((client, seq))
        if earlier is not None and earlier[0] == conn:
            # The same seq twice on one connection: the first keeps its answer.
            raise BadArguments(f"seq {seq} is already in flight on this connection")
        if earlier is not None:
            # A retry on another connection (after a reconnect the node has not noticed yet)
            # takes the answer over; the first hears that it will not get it here.
            message = f"seq {seq} was retried on another connection"
            self.fail(earlier[0], earlier[1], ErrorCode.INDETERMINATE, message)
        self._pending[(client, seq)] = (conn, xid)
        self._commands[(client, seq)] = cmd
        self._queued.pop((client, seq), None)
        if queue is not None:
            self._queued[(client, seq)] = queue
        if not self.e.node.propose(cmd):
            del self._pending[(client, seq)], self._commands[(client, seq)]
            self._queued.pop((client, seq), None)
            self.fail(conn, xid, ErrorCode.UNAVAILABLE, "the node is overloaded; retry")

    def resend(self) -> None:
        """This node follows a new leader: propose again the client writes still waiting here.
        One forwarded to the old leader may have died with it; this is the retry the client
        would make after its attempt timeout (same ``(client, seq)``: applied once), made as
        soon as there is a leader to take it."""
        for key, cmd in list(self._commands.items()):
            if key not in self._pending:
                del self._commands[key]
            else:
                self.e.node.propose_again(cmd)  # a no-op if it still waits here

    def withdraw_waiting(self, why: str) -> None:
        """Answer ``Unavailable`` to every write still waiting in this node's core that never
        left it (the core takes it back, so it can never be decided); writes that went out to
        a leader stay: only their leader's fate can say what became of them."""
        for key, (conn, xid) in list(self._pending.items()):
            if self.e.node.withdraw(*key):
                del self._pending[key]
                self._commands.pop(key, None)
                self._queued.pop(key, None)
                self.fail(conn, xid, ErrorCode.UNAVAILABLE, why)

    def _answer(
        self, conn: int, xid: int, outcome: Outcome | None, queue: QueueWatches | None = None
    ) -> None:
        if outcome is None:  # applied long ago; its answer is no longer kept
            self.fail(conn, xid, ErrorCode.INDETERMINATE, "applied earlier; result not kept")
        elif outcome.ok and queue is not None and type(outcome.value) is str:
            tree, created = self.e.replica.machine.tree, outcome.value

            def register(wid: int, path: str, after: int) -> bool:
                return self._register(conn, wid, path, "data", after)

            self.reply(conn, xid, queue_answer(tree, created, queue, stat_reply, register))
        elif outcome.ok:
            self.reply(conn, xid, outcome.value)
        else:
            code = outcome.error_code or "ZnodeError"
            self.fail(conn, xid, code, outcome.error_message, outcome.error_index)

    # ------------------------------------------------------------------ reads and watches

    def _read(self, conn: int, req: ReadRequest) -> None:
        def serve() -> None:
            try:
                result = self._read_result(req)
            except ZnodeError as exc:
                self.fail(conn, req.xid, exc.code, str(exc))
                return
            if req.watch is not None:  # atomic with the read: the watch sees every later change
                mode = str(READ_WATCH_MODE[req.kind])
                zxid = self.e.replica.applied_zxid
                if not self._register(conn, req.watch, req.path, mode, zxid):
                    self.fail(conn, req.xid, ErrorCode.TOO_MANY_WATCHES, self._too_many())
                    return
            self.reply(conn, req.xid, result)

        self._when_consistent(conn, req.xid, req.local, req.min_zxid, serve)

    def _read_result(self, req: ReadRequest) -> Any:
        machine = self.e.replica.machine
        tree, path, kind = machine.tree, req.path, req.kind
        if kind is ReadKind.GET:
            data, _ = tree.get(path)
            return {"data": data, "stat": stat_reply(tree, path)}
        if kind is ReadKind.EXISTS:
            return stat_reply(tree, path) if tree.exists(path) is not None else None
        if kind is ReadKind.STAT:
            return stat_reply(tree, path)
        if kind is ReadKind.EPHEMERALS:
            return tree.ephemerals(req.session)
        if kind is ReadKind.SESSIONS:
            return [
                {"session": s, "timeout_ms": t, "ephemerals": len(tree.ephemerals(s))}
                for s, t in sorted(machine.sessions().items())
            ]
        names = tree.children(path)
        result: dict[str, Any] = {"children": names}
        if req.stats:
            result["stats"] = {n: stat_reply(tree, f"{path.rstrip('/')}/{n}") for n in names}
        return result

    def _watch_room(self, conn: int, wids: list[int]) -> bool:
        """Whether ``conn`` may hold these watches too (re-registering a wid costs nothing)."""
        watches = self.e.replica.watches
        new = len({w for w in wids if not watches.has(conn, w)})
        return watches.count_of(conn) + new <= self.e.config.max_watches_per_connection

    def _too_many(self) -> str:
        limit = self.e.config.max_watches_per_connection
        return f"a connection may hold at most {limit} watches (--max-watches-per-connection)"

    def _register(
        self,
        conn: int,
        wid: int,
        path: str,
        mode: str,
        after: int,
        budget: ReplayBudget | None = None,
    ) -> bool:
        """Register (and replay, within ``budget``: watches.REPLAY_BUDGET) a watch; False if
        the connection is at its watch limit."""
        if conn not in self._conns:  # it closed while the read waited: its watches are gone
            return True
        if not self._watch_room(conn, [wid]):
            return False
        replica = self.e.replica
        now = replica.watches.register(conn, wid, path, mode, after, replica.applied_zxid, budget)
        self.e.observer.replayed(now)
        self.push_events(conn, [(wid, e) for e in now])
        return True

    def _watch(self, conn: int, req: WatchRequest) -> None:
        """Register a watch without a read; ``after`` replays history from that zxid."""
        self._client(conn)
        after = self.e.replica.applied_zxid if req.after is None else req.after
        if not self._register(conn, req.wid, req.path, str(req.mode), after):
            raise TooManyWatches(self._too_many())
        self.reply(conn, req.xid)

    def _unwatch(self, conn: int, req: UnwatchRequest) -> None:
        self.reply(conn, req.xid, self.e.replica.watches.remove(conn, req.wid))

    def _sync(self, conn: int, req: SyncRequest) -> None:
        self._when_consistent(conn, req.xid, False, 0, lambda: self.reply(conn, req.xid))

    def _when_consistent(
        self, conn: int, xid: int, local: bool, min_zxid: int, serve: Callable[[], None]
    ) -> None:
        """Serve linearizably (read-index), or locally but never older than the client saw."""
        driver = self.e.driver
        if local:

            def beyond(index: int) -> tuple[ErrorCode, str]:
                return ErrorCode.BAD_ARGUMENTS, _ahead(min_zxid, index)

            self._park(conn, xid, slot_of(min_zxid), serve, beyond)
            return

        def on_index(index: int | None) -> None:
            if index is None:
                self.fail(conn, xid, ErrorCode.UNAVAILABLE, "no leader to confirm the read")
            else:
                driver.when_applied(index, serve, conn)

        self._ask_index(on_index)

    def _ask_index(self, on_index: Callable[[int | None], None]) -> None:
        """Ask the leader for a read index; ``on_index`` gets it (None: no leader gave one)."""
        ctx = self._next_ctx
        self._next_ctx += 1
        self._read_waiters[ctx] = on_index
        self.e.node.read_index(ctx)


def _ahead(zxid: int, index: int) -> str:
    return (
        f"zxid {zxid:#x} is ahead of the cluster: it names slot {slot_of(zxid)}, and nothing "
        f"beyond slot {index} was chosen when this request came"
    )
