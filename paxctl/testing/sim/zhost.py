"""One simulated machine of the znodes workload: the production ``NodeEngine`` on a simulated disk.

The host builds the very engine ``paxctl node start`` runs (``server/engine.py``: the Ready loop,
client requests, session keeper, watches, digest audit) over the real storage on a simulated
disk; the world (znodes.py) feeds it ticks, peer messages and client requests, with the host's
own clocks (virtual time scaled by the host's tick drift; the wall clock also offset by minutes
per host, so that a stamp shows whose clock it came from), and carries out what it returns. The
checks below watch the engine through its ``Observer`` hooks: they add invariants, never logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paxctl.core.state import Ready
from paxctl.core.types import Applied, Command, Snapshot
from paxctl.server.engine import EngineConfig, NodeEngine, Observer
from paxctl.server.replica import Replica
from paxctl.server.watches import RESYNC, Event
from paxctl.statemachine.machine import Outcome
from paxctl.statemachine.ops import REAPER_CLIENT, decode_command
from paxctl.testing.sim.host import SimHost
from paxctl.testing.sim.zoracle import ZnodeOracle

if TYPE_CHECKING:
    from paxctl.testing.sim.znodes import ZnodeWorld

#: Driver passes per input at most (the real server runs another pass, in its next loop turn,
#: while a pass had work).
MAX_PASSES = 8


class SimConn:
    """One client connection: an ordered, delayed channel each way between a client and a node.

    Its number is the connection number the node's engine knows it by."""

    __slots__ = (
        "c2n_at",
        "client",
        "id",
        "inc",
        "n2c_at",
        "node",
        "open",
        "watching",
    )

    def __init__(self, cid: int, client: int, node: int, inc: int) -> None:
        self.id = cid
        self.client = client  # index of the simulated client
        self.node = node
        self.inc = inc  # the node's incarnation the connection was made to
        self.open = True
        self.c2n_at = 0  # the channels are in order: no frame overtakes an earlier one
        self.n2c_at = 0
        self.watching = False  # the client's watch is registered here (client side view)

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"c{self.id}"


class HostChecks(Observer):
    """The oracle's view of one host's engine: what it persists, proposes, applies and ends."""

    def __init__(self, host: ZnodeHost) -> None:
        self.host = host
        self.oracle = host.oracle
        self._closing: int | None = None
        self._mismatches = 0

    def persisted(self, ready: Ready) -> None:
        self.oracle.observe(self.host.id, ready)

    def submitted(self, cmd: Command) -> None:
        self.oracle.submitted(cmd)
        world, engine = self.host.world, self.host.engine
        fence = engine.replica.keeper.fence if engine is not None else None
        if world.trace is not None and cmd.client == REAPER_CLIENT and cmd != fence:
            world.log(f"n{self.host.id} reaper proposes {decode_command(cmd.data)[1]}")

    def applying(self, applied: Applied) -> None:
        engine = self.host.engine
        assert engine is not None
        self._mismatches = engine.replica.audit.mismatches

    def applied(self, applied: Applied, replica: Replica) -> None:
        if replica.audit.mismatches != self._mismatches:
            self.oracle.fail(f"node {self.host.id}: the digest audit of the log found a divergence")
        self.oracle.applied_state(self.host.id, applied.slot, replica.machine.digest())

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool) -> None:
        """Called by the replica after each command of a slot, in order (``fresh``: it was
        processed now, not answered as a retry): the oracle checks exactly-once from here."""
        engine = self.host.engine
        assert engine is not None
        replica = engine.replica
        zxid, events = replica.applied_zxid, replica.machine.last_events
        self.oracle.command_applied(self.host.id, zxid, fresh, bool(events))
        if not fresh:
            return  # a retry: it changed nothing
        first = self.oracle.record_changes(self.host.id, zxid, events)
        if replica.machine.last_opened is not None:
            self.host.world.session_created(replica.machine.last_opened, cmd.client, first)
        if self._closing is not None:
            session, self._closing = self._closing, None
            self.host.world.session_ended(self.host.id, session, cmd.client, first)

    def session_closed(self, session: int) -> None:
        """Invariant: right after a session ends, it owns nothing and is not in the table."""
        engine = self.host.engine
        assert engine is not None
        machine = engine.machine
        left = machine.tree.ephemerals(session)
        if left or session in machine.sessions():
            self.oracle.fail(
                f"node {self.host.id}: session {session} ended but still owns {left} or is open"
            )
        self._closing = session

    def replayed(self, events: list[Event]) -> None:
        self.host.world.stats.watch_replays += sum(e.kind != RESYNC for e in events)


class ZnodeHost(SimHost):
    def __init__(
        self, world: ZnodeWorld, node_id: int, shell_bugs: frozenset[str], **kw: Any
    ) -> None:
        super().__init__(node_id, **kw)
        self.world = world
        self.oracle: ZnodeOracle = kw["oracle"]
        self.shell_bugs = shell_bugs
        self.engine: NodeEngine | None = None
        self.digest_every = 0
        self.watch_history = 100_000

    def _restore_app(self, snapshot: Snapshot | None) -> None:
        assert self.node is not None and self.storage is not None
        config = EngineConfig(
            self.id,
            self.voters,
            snapshot_every=self.snapshot_every,
            digest_every=self.digest_every,
            watch_history=self.watch_history,
            min_session_ms=1,  # the simulated clients ask for short sessions
            max_session_ms=1 << 31,
            incarnation=self.incarnation,
            planted_bugs=self.shell_bugs,
        )
        self.engine = NodeEngine(
            config,
            self.node,
            self.storage,
            snapshot,
            observer=HostChecks(self),
            send_early=self.send_early,
        )
        self.driver = self.engine.driver

    def crash(self, tear: Any) -> None:
        if self.engine is not None:
            self.counters["digest_audits"] = (
                self.counters.get("digest_audits", 0) + self.engine.replica.audit.checks
            )
        super().crash(tear)
        self.engine = None
