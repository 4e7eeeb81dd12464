"""What a node does with what the core decided: apply, fire watches, end sessions, audit.

Pure (no sockets, no clock): the asyncio server and the simulator both drive this class, so
the simulator checks the very code that fires watches and expires sessions in production. The
driver hands it each Ready's snapshot and committed slots, in order; everything the outside
world must hear goes through a ``Sink`` the driver provides.
"""

from __future__ import annotations

from typing import Any, Protocol

from paxctl.core.membership import CONFIG_CLIENT
from paxctl.core.node import Node, Role
from paxctl.core.types import Applied, Command
from paxctl.server.audit import SYSTEM_CLIENT, DigestAudit
from paxctl.server.liveness import PLANTED_KEEPER_BUGS, SessionKeeper
from paxctl.server.watches import PLANTED_WATCH_BUGS, Event, EventHistory, WatchRegistry
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.machine import PLANTED_MACHINE_BUGS, Outcome, StateMachine

#: Test only: the bugs ``paxctl sim --plant-bug`` may plant in a replica's keeper, watches and
#: state machine.
PLANTED_REPLICA_BUGS = PLANTED_KEEPER_BUGS | PLANTED_WATCH_BUGS | PLANTED_MACHINE_BUGS


class Sink(Protocol):
    """Where a replica's effects go (the client service, or the simulator's clients)."""

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None: ...

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
        """``cmd`` was applied: ``fresh`` if it was processed now, else it is a retry of a
        command applied earlier, answered from the state machine's table (``outcome`` None:
        applied earlier, result not kept). Called for every command of a slot, in order."""

    def session_closed(self, session: int) -> None: ...

    def change_done(self, cmd: Command, slot: int) -> None:
        """The configuration change ``cmd``, chosen at ``slot``, was judged and applied."""


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
        planted_bugs: frozenset[str] = frozenset(),
    ) -> None:
        self._machine_bugs = planted_bugs & PLANTED_MACHINE_BUGS
        self.machine = machine
        machine.plant(self._machine_bugs)
        # A snapshot covers its whole last slot, up to the machine's last zxid, not just
        # zxid_of(slot, 0): history and replies must not claim less (found by the simulator:
        # the other commands of that slot were neither replayed nor announced by a resync).
        applied_zxid = max(applied_zxid, machine.last_zxid)
        self.applied_zxid = applied_zxid
        self.sink = sink
        self.keeper = SessionKeeper(
            node_id,
            peers,
            incarnation=incarnation,
            planted_bugs=planted_bugs & PLANTED_KEEPER_BUGS,
        )
        self.watches = WatchRegistry(
            EventHistory(watch_history, applied_zxid), planted_bugs & PLANTED_WATCH_BUGS
        )
        self.audit = DigestAudit(digest_every)

    def install(self, app: bytes, slot: int, machine: StateMachine | None = None) -> None:
        """A peer's snapshot replaced our state: watchers here missed what it skipped.
        ``machine``: ``app`` decoded already (when it was checked)."""
        self.machine = machine if machine is not None else StateMachine.restore(app)
        self.machine.plant(self._machine_bugs)
        self.applied_zxid = max(zxid_of(slot, 0), self.machine.last_zxid)  # see __init__
        for conn, fired in self.watches.reset_history(self.applied_zxid).items():
            self.sink.push_events(conn, fired)

    def apply(self, node: Node, committed: tuple[Applied, ...]) -> None:
        """Apply chosen slots in order: each command's events go out before its reply."""
        for applied in committed:
            for index, cmd in enumerate(applied.commands):
                if cmd.client == SYSTEM_CLIENT:
                    self.audit.check(cmd.data)
                    continue
                if cmd.client == CONFIG_CLIENT:  # the core judged it: nothing for the machine
                    self.sink.change_done(cmd, applied.slot)
                    continue
                zxid = zxid_of(applied.slot, index)
                outcome = self.machine.apply_command(zxid, cmd.data, cmd.client, cmd.seq)
                self.applied_zxid = zxid
                if not self.machine.last_fresh:  # a retry: it changed nothing
                    self.sink.write_done(cmd, outcome, False)
                    continue
                events = self.machine.last_events
                if events:
                    for conn, fired in self.watches.fire(zxid, events).items():
                        self.sink.push_events(conn, fired)
                closed = self.machine.last_closed
                if closed is not None:
                    # The machine dropped the session's exactly-once entry as it applied the
                    # close, at this log position on every replica (the core keeps no table
                    # that could drop it at a batch boundary instead).
                    self.sink.session_closed(closed)
                self.sink.write_done(cmd, outcome, True)
            if self.audit.due(applied.slot):
                self.audit.note(applied.slot, self.machine.digest())
                if node.role is Role.LEADER:
                    node.propose(self.audit.command(applied.slot))
