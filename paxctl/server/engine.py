"""The node engine: everything a node does between bytes in and bytes out, as a plain object.

``NodeEngine`` owns the consensus core (``Node``), the production ``Replica`` (state machine,
watches, session keeper, digest audit), the client connections (``ClientRequests``) and the
Ready loop (``Driver``). It is fed events and returns effects:

* inputs: ``tick(now_ms, wall_ms)``, ``receive(message, now_ms, wall_ms)`` (a peer message the
  shell has decoded and checked against the sender), ``connection_opened/closed(conn)``,
  ``request(conn, typed request, wall_ms)``, ``reject(conn, xid, error)`` (a request the codec
  refused). Each returns what it decided at once: messages to peers and ``Frame``s for client
  connections, in order.
* ``process()`` runs one pass of the Ready loop: it persists through the ``Disk`` port (one
  fsync, before anything leaves), then returns the pass's outputs in order, a snapshot to save
  and whether another pass is due.

No clock, no sockets, no files, no randomness of its own: time comes in as arguments (monotonic
``now_ms`` for liveness, ``wall_ms`` to stamp commands), the core's ``random.Random`` is the
shell's. ``paxctl node start`` (``node_server.py``) and the simulator (``testing/sim``) drive this
same class; the simulator's checks watch it through an ``Observer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from paxctl.core.messages import Forward, Message, Relay
from paxctl.core.node import Node, Role
from paxctl.core.state import ReadState, Ready
from paxctl.core.types import Applied, Command, Snapshot
from paxctl.core.validate import Rejection
from paxctl.protocol.messages import Request
from paxctl.server.driver import Disk, Driver, Pass
from paxctl.server.liveness import Duties
from paxctl.server.peercheck import check_forward, check_relay, is_own
from paxctl.server.replica import Replica
from paxctl.server.requests import ClientRequests, Frame
from paxctl.server.watches import Event
from paxctl.server.zxid import slot_of, zxid_of
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.machine import Outcome, StateMachine
from paxctl.statemachine.ops import FIRST_CLIENT_ID, restamp_command

#: Test only: bugs ``paxctl sim --plant-bug`` may plant in the engine itself.
PLANTED_ENGINE_BUGS = frozenset(
    {"no_forward_restamp"}  # commands forwarded to a node keep the forwarding node's clock
)

Output = Message | Frame


@dataclass(frozen=True)
class EngineConfig:
    node_id: int
    peers: tuple[int, ...]
    #: Applied slots between snapshots (0: never).
    snapshot_every: int = 5000
    digest_every: int = 100
    watch_history: int = 100_000
    min_session_ms: int = 1000
    max_session_ms: int = 120_000
    #: Watches one client connection may hold (``TooManyWatches`` beyond; server/limits.py).
    max_watches_per_connection: int = 100_000
    #: A number new to each process start (relay rounds of an earlier run are not this one's).
    incarnation: int = 0
    #: The cluster secret: a configuration change must prove it (protocol/admin_proof.py);
    #: without one every change is refused.
    secret: bytes = field(default=b"", repr=False)
    planted_bugs: frozenset[str] = frozenset()


#: Election timeouts a node goes without a leader before it stops holding its clients' writes
#: for one: past that, no quorum is likely (check-quorum made the last leader step down, and no
#: campaign wins), and "unavailable" tells the client more than a timeout would.
LEADERLESS_TIMEOUTS = 3


class Observer:
    """Hooks for checks (the simulator's oracle); each is called as the engine does it."""

    def persisted(self, ready: Ready) -> None:
        """``ready`` is durable; nothing of it has been sent or applied yet."""

    def submitted(self, cmd: Command) -> None:
        """This node proposes ``cmd`` (a client's, the keeper's, the audit's, or restamped)."""

    def applying(self, applied: Applied) -> None:
        """About to apply one committed slot."""

    def applied(self, applied: Applied, replica: Replica) -> None:
        """Applied one committed slot (its events and answers are out)."""

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool) -> None:
        """The replica applied ``cmd`` (``fresh``), or answered it as a retry of one applied
        earlier; called for every command of a slot, in order, before its answer."""

    def session_closed(self, session: int) -> None:
        """The replica just applied the end of ``session``."""

    def replayed(self, events: list[Event]) -> None:
        """A watch registration replayed ``events`` from history."""


class NodeEngine:
    def __init__(
        self,
        config: EngineConfig,
        node: Node,
        disk: Disk,
        snapshot: Snapshot | None,
        *,
        observer: Observer | None = None,
        describe: Callable[[], dict[str, object]] | None = None,
        send_early: Callable[[tuple[Message, ...]], None] | None = None,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self.node = node
        self.observer = observer if observer is not None else Observer()
        self._describe = describe
        self._restamp = "no_forward_restamp" not in config.planted_bugs
        self._leaderless_ticks = 0  # ticks since this node last knew a leader
        self._leader_seen: int | None = None  # the last leader this node knew
        self.clients = ClientRequests(self)
        self.replica = Replica(
            config.node_id,
            config.peers,
            StateMachine.restore(snapshot.app) if snapshot else StateMachine(),
            zxid_of(snapshot.slot, 0) if snapshot else 0,
            self.clients,
            incarnation=config.incarnation,
            digest_every=config.digest_every,
            watch_history=config.watch_history,
            planted_bugs=config.planted_bugs,
        )
        # A snapshot pulled from a peer is decoded and checked here before the core installs
        # it; the machine decoded then is the one installed (a big tree is decoded once).
        self._checked: tuple[bytes, StateMachine] | None = None
        node.check_snapshot = self.check_snapshot
        self.driver: Driver[Frame] = Driver(
            node,
            disk,
            self,
            snapshot_every=config.snapshot_every,
            on_persisted=self.observer.persisted,
            send_early=send_early,
        )

    @property
    def machine(self) -> StateMachine:
        return self.replica.machine

    # ------------------------------------------------------------------ inputs

    def tick(self, now_ms: int, wall_ms: int) -> list[Output]:
        """One tick of the shell's timer: the core's timers, then the session keeper's."""
        self.node.tick()
        self._follow_leader()
        self._leaderless_ticks = 0 if self.node.leader is not None else self._leaderless_ticks + 1
        if self.leaderless:
            self.clients.withdraw_waiting(self.leaderless_message())
        self.replica.keeper.peers = self.peers()
        self._do(self.replica.keeper.tick(self.node, self.machine, now_ms, wall_ms))
        return self.driver.take()

    def receive(self, msg: Message, now_ms: int, wall_ms: int) -> list[Output]:
        """A peer's message, decoded and checked against its sender by the shell.

        Forward and Relay are checked here (``peercheck.py``), every other kind by the core;
        ``take_rejections`` then says what was dropped and why.
        """
        checks = not self.node.config.planted_bugs.no_peer_checks
        if isinstance(msg, Relay):  # the keeper's own traffic; the core never sees it
            rejection = check_relay(self.node, msg) if checks else None
            if rejection is not None:
                self.node.reject(msg, rejection)
            elif msg.to == self.id:
                keeper = self.replica.keeper
                self._do(keeper.on_relay(msg, self.node, self.machine, now_ms))
            return self.driver.take()
        if isinstance(msg, Forward) and checks:
            rejection = check_forward(self.node, msg)
            if rejection is not None:
                self.node.reject(msg, rejection)
                if rejection.code != "system-client":
                    return self.driver.take()
                kept = tuple(c for c in msg.commands if not is_own(c))
                msg = Forward(msg.frm, msg.to, kept)  # the clients' commands still count
        if isinstance(msg, Forward) and self._restamp:
            msg = Forward(msg.frm, msg.to, tuple(self.stamp(c, wall_ms) for c in msg.commands))
        self.node.step(msg)
        self._follow_leader()
        return self.driver.take()

    def _follow_leader(self) -> None:
        """On a change of leader, hand the client writes waiting here to the new one at once
        (``ClientRequests.resend``) rather than after their clients' attempt timeouts."""
        leader = self.node.leader
        if leader is not None and leader != self._leader_seen:
            if self._leader_seen is not None:
                self.clients.resend()
            self._leader_seen = leader

    def peer_lost(self, peer: int) -> list[Output]:
        """The shell's connection to ``peer`` closed: a leader's crash is noticed at once
        (``Node.peer_lost``) rather than after an election timeout of silence."""
        self.node.peer_lost(peer)
        return self.driver.take()

    def peer_linked(self, peer: int) -> list[Output]:
        """The shell's connection to ``peer`` is up: a node that knows no leader campaigns
        once it reaches a quorum (``Node.peer_linked``)."""
        self.node.peer_linked(peer)
        return self.driver.take()

    @property
    def leaderless(self) -> bool:
        """This node has known no leader for ``LEADERLESS_TIMEOUTS`` election timeouts."""
        return self._leaderless_ticks >= LEADERLESS_TIMEOUTS * self.node.config.election_ticks

    def leaderless_message(self) -> str:
        timeouts = LEADERLESS_TIMEOUTS
        return (
            f"no leader for {timeouts} election timeouts (no quorum of voters reachable?): "
            "nothing was done; retry later"
        )

    def peers(self) -> tuple[int, ...]:
        """The other members of every configuration this node keeps (who hears its relays)."""
        return tuple(sorted(self.node.members.member_ids() - {self.id}))

    def take_rejections(self) -> list[tuple[Message, Rejection]]:
        """Peer messages dropped since the last call, and why (for the shell's log)."""
        return self.node.take_rejections()

    def stamp(self, cmd: Command, wall_ms: int) -> Command:
        """Stamp a forwarded client command with this node's clock, so that znode times and
        TTLs come from the clock of the node that proposes it (the leader), not of the node a
        client used. A node that is not the leader stamps too: it may lead before it hands the
        command on, and the leader stamps again what it is handed."""
        if cmd.client < FIRST_CLIENT_ID:
            return cmd
        stamped = Command(cmd.client, cmd.seq, restamp_command(cmd.data, wall_ms))
        self.observer.submitted(stamped)
        return stamped

    def connection_opened(self, conn: int) -> None:
        self.clients.opened(conn)

    def connection_closed(self, conn: int) -> None:
        """Forget the connection: its pending answers, watches, waiting pings and reads."""
        self.clients.closed(conn)

    def request(self, conn: int, req: Request, wall_ms: int) -> list[Output]:
        """A client's typed request (``protocol/messages.py``) on connection ``conn``."""
        self.clients.handle(conn, req, wall_ms)
        return self.driver.take()

    def reject(self, conn: int, xid: int, error: ZnodeError) -> list[Output]:
        """A request the codec refused (``BadRequest``): answered with its code."""
        self.clients.fail(conn, xid, error.code, error.message)
        return self.driver.take()

    # ------------------------------------------------------------------ the Ready loop

    def process(self) -> Pass[Frame]:
        """One pass of the Ready loop (``driver.py``); the shell sends its outputs in order,
        then saves its snapshot, and runs another pass if ``more``."""
        done = self.driver.run()
        checks = not self.node.config.planted_bugs.no_peer_checks  # off: the old behaviour
        if checks and any(isinstance(out, Forward) for out in done.outputs):
            done.outputs = [o for o in map(_without_own_commands, done.outputs) if o is not None]
        return done

    def _do(self, duties: Duties) -> None:
        """Carry out what the session keeper asked for: send, propose, answer pings."""
        keeper = self.replica.keeper
        if keeper.fence is not None:  # proposed by the keeper itself
            self.observer.submitted(keeper.fence)
        self.driver.out.extend(duties.messages)
        for cmd in duties.proposals:
            self.observer.submitted(cmd)
            self.node.propose(cmd)
        for token, alive in duties.answers:
            self.clients.ping_answered(token, alive)

    # ------------------------------------------------------------------ the Application

    def check_snapshot(self, snapshot: Snapshot) -> bool:
        """Whether a snapshot pulled from a peer is a state machine this node can run from:
        it decodes and passes the machine's own checks, and applies nothing beyond its slot."""
        try:
            machine = StateMachine.restore(snapshot.app)
        except Exception:  # SnapshotError, or anything a hostile encoding could provoke
            return False
        if slot_of(machine.last_zxid) > snapshot.slot:
            return False
        self._checked = (snapshot.app, machine)
        return True

    def install(self, snapshot: Snapshot) -> None:
        checked, self._checked = self._checked, None
        machine = checked[1] if checked is not None and checked[0] is snapshot.app else None
        self.replica.install(snapshot.app, snapshot.slot, machine)

    def apply(self, applied: Applied) -> None:
        self.observer.applying(applied)
        replica, node = self.replica, self.node
        replica.apply(node, (applied,))
        self.observer.applied(applied, replica)
        if replica.audit.due(applied.slot) and node.role is Role.LEADER:
            self.observer.submitted(replica.audit.command(applied.slot))  # what apply proposed

    def read_done(self, read: ReadState) -> None:
        keeper = self.replica.keeper
        if keeper.is_confirmation(read.ctx):
            self._do(keeper.confirmed(read.ctx, read.index is not None, self.machine))
        else:
            self.clients.index_ready(read.ctx, read.index)

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, object]:
        node, replica = self.node, self.replica
        doc: dict[str, object] = {
            "id": self.id,
            "role": node.role.value,
            "leader": node.leader if node.role is not Role.LEADER else node.id,
            "ballot": str(node.ballot),
            "promised": str(node.acceptor.promised),
            "chosen": node.learner.commit,
            "applied": node.learner.applied,
            "compacted": node.acceptor.compacted,
            "zxid": replica.applied_zxid,
        }
        if self._describe is not None:  # what only the shell knows: addresses, pid, uptime
            doc.update(self._describe())
        doc.update(
            {
                "digest": self.machine.digest().hex()[:16],
                "counters": dict(sorted(node.counters.items())),
                "digest_checks": replica.audit.checks,
                "digest_mismatches": replica.audit.mismatches,
                "sessions": len(self.machine.sessions()),
                "watches": replica.watches.count(),
                "waiting_reads": self.driver.waiting,
                "sessions_expired": replica.keeper.expired_proposed,
            }
        )
        return doc


def _without_own_commands(out: Output) -> Output | None:
    """A deposed leader hands its waiting commands to the next one, but the audit's and the
    reaper's are its own to propose (the next leader refuses them from a peer, and its own
    keeper and audit take over): they stay behind, and a Forward left empty is not sent.
    Configuration changes go on, like clients' writes."""
    if not isinstance(out, Forward):
        return out
    kept = tuple(c for c in out.commands if not is_own(c))
    if len(kept) == len(out.commands):
        return out
    return Forward(out.frm, out.to, kept) if kept else None
