"""The replica tells its sink, for every command of a slot, whether it took effect or was a retry.

The core hands on every chosen command (it keeps no exactly-once table); the state machine decides
in log order, and the replica passes that on, so the node holding the connection answers a
retry exactly as before: with the first reply, or ``Indeterminate`` when it is no longer kept.
"""

from __future__ import annotations

from typing import Any

from helpers import make_node

from paxctl.core.types import Applied, Command
from paxctl.server.replica import Replica
from paxctl.server.watches import Event
from paxctl.server.zxid import zxid_of
from paxctl.statemachine import (
    TEMP_CLIENT_BIT,
    CloseSession,
    Create,
    OpenSession,
    Outcome,
    StateMachine,
    encode_command,
)


class Sink:
    def __init__(self) -> None:
        self.done: list[tuple[Command, Outcome | None, bool]] = []
        self.closed: list[int] = []

    def push_events(self, conn: Any, events: list[tuple[int, Event]]) -> None:
        pass

    def write_done(self, cmd: Command, outcome: Outcome | None, fresh: bool = True) -> None:
        self.done.append((cmd, outcome, fresh))

    def session_closed(self, session: int) -> None:
        self.closed.append(session)


def command(client: int, seq: int, op: object) -> Command:
    return Command(client, seq, encode_command(1, op))  # type: ignore[arg-type]


def test_the_sink_hears_each_command_in_order_fresh_or_a_retry():
    sink = Sink()
    replica = Replica(1, (1, 2, 3), StateMachine(), 0, sink, digest_every=0)
    node = make_node(1)
    temp = TEMP_CLIENT_BIT | 9
    opened = command(temp, 1, OpenSession(1000))
    replica.apply(node, (Applied(1, (opened,)),))
    session = zxid_of(1, 0)
    assert sink.done == [(opened, Outcome(True, session), True)]
    write = command(session, 1, Create("/a"))
    older = command(session, 0, Create("/b"))
    replica.apply(node, (Applied(2, (write, write)), Applied(3, (older, write))))
    assert [(c, o, f) for c, o, f in sink.done[1:]] == [
        (write, Outcome(True, "/a"), True),
        (write, Outcome(True, "/a"), False),  # the retry: the first reply, not applied again
        (older, None, False),  # applied earlier, result not kept: Indeterminate
        (write, Outcome(True, "/a"), False),
    ]
    assert replica.applied_zxid == zxid_of(3, 1)
    assert replica.machine.tree.children("/") == ["a"]
    close = command(session, 2, CloseSession(session))
    late = command(session, 1, Create("/a"))  # a late retry after the close
    replica.apply(node, (Applied(4, (close, late)),))
    assert sink.closed == [session]
    assert sink.done[-2] == (close, Outcome(True, []), True)
    cmd, outcome, fresh = sink.done[-1]
    assert cmd == late and fresh and outcome is not None
    assert outcome.error_code == "SessionExpired"
