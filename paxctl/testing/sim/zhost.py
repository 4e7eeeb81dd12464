"""One simulated machine of the znodes workload: core, disk, and the production ``Replica``.

The host drives the node exactly as ``server/node_server.py`` does: persist, send, install a
peer's snapshot (``Replica.install``), apply the committed slots (``Replica.apply``: state
machine, watch events, session ends, digest audit), hand read-index results to the session
keeper (``CONFIRM_BIT`` contexts) or to waiting client reads, advance, snapshot. Relay messages
never reach the core; the keeper ticks on every host tick. Its clock is the host's own: virtual
time scaled by the host's tick drift (a host whose ticks are fast has a fast clock).

``NodeService`` is the simulator's copy of ``server/client_service.py`` (which is bound to
asyncio transports): the same requests, the same order of replies and pushed events, the same
calls into the keeper and the watch registry, on simulated connections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paxctl.core.messages import Message
from paxctl.core.node import Role
from paxctl.core.state import Ready
from paxctl.core.types import Applied, Command, Snapshot
from paxctl.server.liveness import Duties
from paxctl.server.replica import Replica
from paxctl.server.watches import RESYNC, Event
from paxctl.server.zxid import slot_of, zxid_of
from paxctl.statemachine.machine import Outcome, StateMachine
from paxctl.statemachine.ops import (
    CloseSession,
    Op,
    OpenSession,
    decode_command,
    encode_command,
)
from paxctl.testing.sim.host import SimHost
from paxctl.testing.sim.zoracle import ZnodeOracle

if TYPE_CHECKING:
    from paxctl.testing.sim.znodes import ZnodeWorld

#: Driver passes per input at most (the real driver loops while a batch had work).
MAX_PASSES = 8


class SimConn:
    """One client connection: an ordered, delayed channel each way between a client and a node.

    Hashed by its number, so the watch registry orders nothing by memory addresses."""

    __slots__ = (
        "c2n_at",
        "client",
        "greeted",
        "id",
        "inc",
        "n2c_at",
        "node",
        "open",
        "state",
        "watching",
    )

    def __init__(self, cid: int, client: int, node: int, inc: int) -> None:
        self.id = cid
        self.client = client  # index of the simulated client
        self.node = node
        self.inc = inc  # the node's incarnation the connection was made to
        self.open = True
        self.state: ConnState | None = None  # after the hello
        self.c2n_at = 0  # the channels are in order: no frame overtakes an earlier one
        self.n2c_at = 0
        self.watching = False  # the client's watch is registered here (client side view)
        self.greeted = False  # the node accepted the hello (client side view)

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"c{self.id}"


@dataclass
class ConnState:
    """``ClientConn`` of the real service: who said hello, and whether with a session."""

    client: int
    session: bool = False
    opening: tuple[int, int] | None = None  # (seq, timeout) of its open_session in flight


class NodeService:
    """The node side of client connections; also the replica's ``Sink``."""

    def __init__(self, host: ZnodeHost) -> None:
        self.host = host
        self._pending: dict[tuple[int, int], tuple[SimConn, int]] = {}
        self._by_client: dict[int, SimConn] = {}
        self._reads: list[tuple[int, Callable[[], None]]] = []
        self._read_waiters: dict[int, Callable[[int | None], None]] = {}
        self._next_ctx = 1

    @property
    def replica(self) -> Replica:
        assert self.host.replica is not None
        return self.host.replica

    def _send(self, conn: SimConn, frame: dict[str, Any]) -> None:
        if conn.open:
            frame["zxid"] = self.replica.applied_zxid
            self.host.world.to_client(conn, frame)

    def _reply(self, conn: SimConn, xid: int, ok: Any = None, err: str | None = None) -> None:
        self._send(conn, {"xid": xid, "ok": ok} if err is None else {"xid": xid, "err": err})

    # ------------------------------------------------------------------ Sink

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None:
        if events and isinstance(conn, SimConn):
            self._send(conn, {"events": [(wid, e.kind, e.path, e.zxid) for wid, e in events]})

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
        self.host.write_done(cmd, fresh)
        waiting = self._pending.pop((cmd.client, cmd.seq), None)
        if waiting is None:
            return
        conn, xid = waiting
        state = conn.state
        if state is not None and state.opening and state.opening[0] == cmd.seq:
            timeout, state.opening = state.opening[1], None
            if outcome is not None and outcome.ok and type(outcome.value) is int:
                if self._by_client.get(state.client) is conn:
                    del self._by_client[state.client]
                state.client, state.session = outcome.value, True
                self._by_client[state.client] = conn
                self._reply(conn, xid, {"session": state.client, "timeout_ms": timeout})
                return
        self._answer(conn, xid, outcome)

    def session_closed(self, session: int) -> None:
        self.host.session_closed(session)
        conn = self._by_client.get(session)
        if conn is not None and conn.open:
            self._send(conn, {"expired": session})

    def ping_answered(self, token: Any, alive: bool) -> None:
        conn, xid, session = token
        if conn.open:
            if alive or not session:
                self._reply(conn, xid, None)
            else:
                self._reply(conn, xid, err="SessionExpired")

    def on_lost(self, conn: SimConn) -> None:
        for key in [k for k, (c, _) in self._pending.items() if c is conn]:
            del self._pending[key]
        self.replica.watches.drop(conn)
        self.replica.keeper.discard(lambda token: token[0] is conn)
        if conn.state is not None and self._by_client.get(conn.state.client) is conn:
            del self._by_client[conn.state.client]

    # ------------------------------------------------------------------ requests

    def request(self, conn: SimConn, req: dict[str, Any]) -> None:
        state = conn.state
        if state is not None and state.session:
            self.replica.keeper.touch(state.client)  # every request is a heartbeat
        op, xid = req["op"], req["xid"]
        if op != "hello" and state is None:
            self._reply(conn, xid, err="BadArguments")
            return
        getattr(self, f"_op_{op}")(conn, xid, req)

    def _op_hello(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        client, session, after = req["client"], req["session"], req["after"]
        watches: list[tuple[int, str, str]] = req["watches"]

        def resume() -> None:
            if not conn.open:
                return
            if session and client not in self.replica.machine.sessions():
                self._reply(conn, xid, err="SessionExpired")
                return
            conn.state = ConnState(client, session)
            self._by_client[client] = conn
            for wid, path, mode in watches:
                self._register(conn, wid, path, mode, after)
            self._reply(conn, xid, {"node": self.host.id})

        self.when_applied(slot_of(after), resume)

    def _op_open_session(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        assert conn.state is not None
        conn.state.opening = (req["seq"], req["timeout_ms"])
        self._propose(conn, xid, req["seq"], OpenSession(req["timeout_ms"]))

    def _op_close_session(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        assert conn.state is not None
        self._propose(conn, xid, req["seq"], CloseSession(conn.state.client))

    def _op_ping(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        state = conn.state
        assert state is not None
        if state.session and state.client not in self.replica.machine.sessions():
            self._reply(conn, xid, err="SessionExpired")
            return
        session = state.client if state.session else 0
        self.replica.keeper.ping(session, (conn, xid, state.session))

    def _op_write(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        self._propose(conn, xid, req["seq"], req["data"])

    def _propose(self, conn: SimConn, xid: int, seq: int, op: Op) -> None:
        assert conn.state is not None
        node = self.host.node
        assert node is not None
        client = conn.state.client
        cmd = Command(client, seq, encode_command(self.host.world.local_ms(self.host.id), op))
        self.host.oracle.submitted(cmd)
        if self.replica.machine.is_applied(client, seq):
            self._answer(conn, xid, self.replica.machine.cached(client, seq))
            return
        self._pending[(client, seq)] = (conn, xid)
        if not node.propose(cmd):
            del self._pending[(client, seq)]
            self._reply(conn, xid, err="Unavailable")

    def _answer(self, conn: SimConn, xid: int, outcome: Outcome | None) -> None:
        if outcome is None:
            self._reply(conn, xid, err="Indeterminate")
        elif outcome.ok:
            self._reply(conn, xid, outcome.value)
        else:
            self._reply(conn, xid, err=outcome.error_code)

    def _register(self, conn: SimConn, wid: int, path: str, mode: str, after: int) -> None:
        if not conn.open:
            return
        replica = self.replica
        now = replica.watches.register(conn, wid, path, mode, after, replica.applied_zxid)
        stats = self.host.world.stats
        stats.watch_replays += sum(e.kind != RESYNC for e in now)
        self.push_events(conn, [(wid, e) for e in now])

    def _op_watch(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        after = req["after"]
        after = self.replica.applied_zxid if after is None else after
        self._register(conn, req["wid"], req["path"], req["mode"], after)
        self._reply(conn, xid, None)

    def _op_sync(self, conn: SimConn, xid: int, req: dict[str, Any]) -> None:
        def on_index(index: int | None) -> None:
            if index is None:
                self._reply(conn, xid, err="Unavailable")
            else:
                self.when_applied(index, lambda: self._reply(conn, xid, None))

        self.read_index(on_index)

    # ------------------------------------------------------------------ reads

    def read_index(self, on_index: Callable[[int | None], None]) -> None:
        node = self.host.node
        assert node is not None
        ctx = self._next_ctx
        self._next_ctx += 1
        self._read_waiters[ctx] = on_index
        node.read_index(ctx)

    def when_applied(self, slot: int, serve: Callable[[], None]) -> None:
        node = self.host.node
        assert node is not None
        if node.learner.applied >= slot:
            serve()
        else:
            self._reads.append((slot, serve))

    def index_ready(self, ctx: int, index: int | None) -> None:
        waiter = self._read_waiters.pop(ctx, None)
        if waiter is not None:
            waiter(index)

    def serve_reads(self) -> None:
        node = self.host.node
        assert node is not None
        applied = node.learner.applied
        due = [serve for slot, serve in self._reads if slot <= applied]
        self._reads = [(slot, serve) for slot, serve in self._reads if slot > applied]
        for serve in due:
            serve()


class ZnodeHost(SimHost):
    def __init__(
        self, world: ZnodeWorld, node_id: int, shell_bugs: frozenset[str], **kw: Any
    ) -> None:
        super().__init__(node_id, **kw)
        self.world = world
        self.oracle: ZnodeOracle = kw["oracle"]
        self.shell_bugs = shell_bugs
        self.replica: Replica | None = None
        self.service: NodeService | None = None
        self.digest_every = 0
        self.watch_history = 100_000
        self._closing: int | None = None

    def _restore_app(self, snapshot: Snapshot | None) -> None:
        machine = StateMachine.restore(snapshot.app) if snapshot else StateMachine()
        self.service = NodeService(self)
        self.replica = Replica(
            self.id,
            self.voters,
            machine,
            zxid_of(snapshot.slot, 0) if snapshot else 0,
            self.service,
            incarnation=self.incarnation,
            digest_every=self.digest_every,
            watch_history=self.watch_history,
            planted_bugs=self.shell_bugs,
        )

    def crash(self, tear: Any) -> None:
        if self.replica is not None:
            self.counters["digest_audits"] = (
                self.counters.get("digest_audits", 0) + self.replica.audit.checks
            )
        super().crash(tear)
        self.replica = None
        self.service = None

    # ------------------------------------------------------------------ the driver

    def do(self, duties: Duties) -> None:
        """``NodeServer._do``: send, propose, answer pings."""
        node, service, replica = self.node, self.service, self.replica
        assert node is not None and service is not None and replica is not None
        if replica.keeper.fence is not None:  # proposed by the keeper itself
            self.oracle.submitted(replica.keeper.fence)
        for msg in duties.messages:
            self.world.send_message(msg)
        for cmd in duties.proposals:
            self.oracle.submitted(cmd)
            node.propose(cmd)
            if self.world.trace is not None:
                self.world.log(f"n{self.id} reaper proposes {decode_command(cmd.data)[1]}")
        for token, alive in duties.answers:
            service.ping_answered(token, alive)

    def drive_znodes(self, send: Callable[[Message], None]) -> list[Ready]:
        """``NodeServer._handle_ready``, repeated while a batch had work (the real loop kicks
        itself again then). Raises SimulatedCrash if the disk was armed to fail mid-way."""
        batches = []
        for _ in range(MAX_PASSES):
            node, storage, replica, service = self.node, self.storage, self.replica, self.service
            assert node is not None and storage is not None
            assert replica is not None and service is not None
            ready = node.ready()
            if not ready:
                node.advance()
                break
            batches.append(ready)
            storage.persist(ready)  # 1.
            self.oracle.observe(self.id, ready)
            for msg in ready.messages:  # 2.
                send(msg)
            if ready.snapshot is not None:  # 3.
                replica.install(ready.snapshot.app, ready.snapshot.slot)
            for applied in ready.committed:
                self._apply(applied)
            for read in ready.reads:
                if replica.keeper.is_confirmation(read.ctx):
                    ok = read.index is not None
                    self.do(replica.keeper.confirmed(read.ctx, ok, replica.machine))
                else:
                    service.index_ready(read.ctx, read.index)
            service.serve_reads()
            node.advance()  # 4.
            learner = node.learner
            if self.snapshot_every and learner.applied - learner.base >= self.snapshot_every:
                storage.save_snapshot(node.compact(learner.applied, replica.machine.snapshot()))
            if not (ready.messages or ready.committed):
                break
        return batches

    def _apply(self, applied: Applied) -> None:
        node, replica = self.node, self.replica
        assert node is not None and replica is not None
        mismatches = replica.audit.mismatches
        replica.apply(node, (applied,))
        if replica.audit.mismatches != mismatches:
            self.oracle.fail(f"node {self.id}: the digest audit of the log found a divergence")
        self.oracle.applied_state(self.id, applied.slot, replica.machine.digest())
        if replica.audit.due(applied.slot) and node.role is Role.LEADER:
            self.oracle.submitted(replica.audit.command(applied.slot))  # what apply proposed

    def write_done(self, cmd: Command, fresh: bool) -> None:
        """Called by the replica after each command of a slot, in order (``fresh``: it was
        processed now, not answered as a retry): the oracle checks exactly-once from here."""
        replica = self.replica
        assert replica is not None
        zxid, events = replica.applied_zxid, replica.machine.last_events
        self.oracle.command_applied(self.id, zxid, fresh, bool(events))
        if not fresh:
            return  # a retry: it changed nothing
        first = self.oracle.record_changes(self.id, zxid, events)
        if replica.machine.last_opened is not None:
            self.world.session_created(replica.machine.last_opened, cmd.client, first)
        if self._closing is not None:
            session, self._closing = self._closing, None
            self.world.session_ended(self.id, session, cmd.client, first)

    def session_closed(self, session: int) -> None:
        """Invariant: right after a session ends, it owns nothing and is not in the table."""
        replica = self.replica
        assert replica is not None
        machine = replica.machine
        left = machine.tree.ephemerals(session)
        if left or session in machine.sessions():
            self.oracle.fail(
                f"node {self.id}: session {session} ended but still owns {left} or is open"
            )
        self._closing = session
