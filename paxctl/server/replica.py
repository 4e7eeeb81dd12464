"""What a node does with what the core decided: apply, fire watches, end sessions, audit.

Pure (no sockets, no clock): the asyncio server and the simulator both drive this class, so
the simulator checks the very code that fires watches and expires sessions in production. The
driver hands it each Ready's snapshot and committed slots, in order; everything the outside
world must hear goes through a ``Sink`` the driver provides.
"""

from __future__ import annotations

from typing import Any, Protocol

from paxctl.core.node import Node, Role
from paxctl.core.types import Applied, Command
from paxctl.server.audit import SYSTEM_CLIENT, DigestAudit
from paxctl.server.liveness import SessionKeeper
from paxctl.server.watches import Event, EventHistory, WatchRegistry
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.machine import Outcome, StateMachine


class Sink(Protocol):
    """Where a replica's effects go (the client service, or the simulator's clients)."""

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None: ...

    def write_done(self, cmd: Command, outcome: Outcome | None) -> None: ...

    def session_closed(self, session: int) -> None: ...


class Replica:
    def __init__(
        self,
        node_id: int,
        peers: tuple[int, ...],
        machine: StateMachine,
        applied_zxid: int,
        sink: Sink,
        *,
        incarnation: int = 0,
        digest_every: int = 100,
        watch_history: int = 100_000,
    ) -> None:
        self.machine = machine
        self.applied_zxid = applied_zxid
        self.sink = sink
        self.keeper = SessionKeeper(node_id, peers, incarnation=incarnation)
        self.watches = WatchRegistry(EventHistory(watch_history, applied_zxid))
        self.audit = DigestAudit(digest_every)

    def install(self, app: bytes, slot: int) -> None:
        """A peer's snapshot replaced our state: watchers here missed what it skipped."""
        self.machine = StateMachine.restore(app)
        self.applied_zxid = zxid_of(slot, 0)
        for conn, fired in self.watches.reset_history(self.applied_zxid).items():
            self.sink.push_events(conn, fired)

    def apply(self, node: Node, committed: tuple[Applied, ...]) -> None:
        """Apply chosen slots in order: each command's events go out before its reply."""
        for applied in committed:
            for index, cmd in enumerate(applied.commands):
                if cmd.client == SYSTEM_CLIENT:
                    self.audit.check(cmd.data)
                    continue
                zxid = zxid_of(applied.slot, index)
                outcome = self.machine.apply_command(zxid, cmd.data, cmd.client, cmd.seq)
                self.applied_zxid = zxid
                events = self.machine.last_events
                if events:
                    for conn, fired in self.watches.fire(zxid, events).items():
                        self.sink.push_events(conn, fired)
                closed = self.machine.last_closed
                if closed is not None:
                    node.forget_client(closed)  # at the same log position on every replica
                    self.sink.session_closed(closed)
                self.sink.write_done(cmd, outcome)
            for cmd in applied.skipped:
                self.sink.write_done(cmd, self.machine.cached(cmd.client, cmd.seq))
            if self.audit.due(applied.slot):
                self.audit.note(applied.slot, self.machine.digest())
                if node.role is Role.LEADER:
                    node.propose(self.audit.command(applied.slot))
