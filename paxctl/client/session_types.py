"""The client session's types (session.py): what it tells its driver, its states, its records.

The driver acts on every output, in order: ``Connect`` (open a connection, then report
``connected`` or ``connect_failed``), ``Send`` (a typed request on a connection), ``Close``,
``Completed``/``CallFailed`` (a call's end), ``StateChanged`` (the session's state), ``Link`` (a
connection ready, or a ready one lost), ``Delivered`` (a watch event for the application) and
``Renewed`` (a ping answered alive). ``ClientBugs`` is the planted-bug policy the simulator
hands the session; it is all off everywhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from paxctl.lazyclass import dataclass
from paxctl.protocol.messages import (
    Hello,
    Request,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchSpec,
)


class SessionState(enum.Enum):
    NONE = "none"  # no session opened yet (reads and watches need none)
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientBugs:
    """Planted client bugs (all off outside the simulator), asked by attribute, never by name."""

    #: Take the zxid of any frame as seen, even the answer to a hello the node refused.
    zxid_from_failed_hello: bool = False

    @classmethod
    def from_names(cls, names: frozenset[str]) -> ClientBugs:
        return cls(**{name: True for name in names & PLANTED_CLIENT_BUGS})


PLANTED_CLIENT_BUGS = frozenset(ClientBugs.__match_args__)  # its fields, without making them
NO_CLIENT_BUGS = ClientBugs()


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection to server number ``server`` (modulo the driver's list), then report
    ``connected(conn)`` or ``connect_failed(conn, ...)``."""

    conn: int
    server: int


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    request: Request


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn`` (no need to report its loss)."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    call: int
    value: Any


@dataclass(frozen=True, slots=True)
class CallFailed:
    call: int
    error: Exception


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: SessionState


@dataclass(frozen=True, slots=True)
class Link:
    """A connection became ready (its hello was accepted), or a ready one was lost."""

    up: bool
    conn: int
    server: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """A watch event for the application; ``last`` when the watch has ended with it."""

    event: WatchEvent
    last: bool


@dataclass(frozen=True, slots=True)
class Renewed:
    """A ping sent at ``sent`` was answered alive: ``session`` lives until sent + timeout."""

    session: int
    sent: float


Output = Connect | Send | Close | Completed | CallFailed | StateChanged | Link | Delivered | Renewed


# ---------------------------------------------------------------------------- the session's records

_HELLO = -1
_PING = -2


@dataclass(slots=True)
class ConnRecord:
    id: int
    server: int
    deadline: float  # for the connect, then for the hello's answer
    hello: Hello | None = None
    ready: bool = False
    greeted: bool = False  # the hello took effect: this connection's zxids count as seen
    probing: bool = False  # a hello without watches is out: the full one follows its answer
    next_xid: int = 1
    zxid: int = 0  # the zxid its hello was accepted at
    pending: dict[int, int] = field(default_factory=dict)  # xid -> call id, _HELLO, _PING
    #: Watch events the node sent before its hello's answer (the replay of what changed while
    #: away): delivered once the connection is announced ready, so a listener hears "up"
    #: before the events that came over it; dropped with a hello that fails (they come again).
    early: list[WatchEvents] = field(default_factory=list)


@dataclass(slots=True)
class CallRecord:
    id: int
    request: Request  # xid 0: set per attempt
    deadline: float | None
    timeout_ms: float | None
    write: bool
    epoch: int
    retry: bool = True
    #: Never sent twice once it may have reached a node (a configuration change: nothing
    #: dedups it): a lost connection or answer after that makes it ``Indeterminate``.
    once: bool = False
    wid: int | None = None  # a watch this call registers
    conn: int | None = None
    attempt_deadline: float = 0.0
    maybe_sent: bool = False
    #: An attempt reached a node whose connection then broke before it answered: whatever a
    #: later node says, that one may still have it decided.
    unanswered: bool = False
    first_sent: float | None = None
    last: str = "no server answered"


@dataclass(slots=True)
class WatchRecord:
    path: str
    mode: WatchMode
    armed: bool = False  # a node registered it: every hello re-registers it
    floor: int = 0  # zxid of the last event delivered

    @property
    def one_shot(self) -> bool:
        return self.mode in (WatchMode.DATA, WatchMode.CHILDREN)


def hello_watch_bytes(watches: Sequence[WatchSpec]) -> int:
    """At least the bytes these watches take in a hello (each path plus a generous 26)."""
    return sum(len(w.path.encode()) + 26 for w in watches)
