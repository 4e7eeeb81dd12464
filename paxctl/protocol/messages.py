"""The client protocol as types: one frozen dataclass per request, reply and push.

Both ends speak these objects; only ``protocol/codec.py`` knows how they look as bytes. A node
dispatches on the request's type (never on a string turned into a method name), and whatever
reaches a handler has already been checked field by field, so handlers hold no ``KeyError`` or
``TypeError`` guesswork. The simulator passes the same objects between its clients and nodes.

Requests carry the connection's ``xid``; every reply echoes it. Pushes carry none: they are
the node speaking first (watch events, the end of the connection's session). Every reply and
push carries ``zxid``, the last transaction the serving node had applied when it sent it.
"""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum
from typing import Any

from paxctl.lazyclass import dataclass
from paxctl.protocol.errors import ErrorCode
from paxctl.statemachine.ops import Op


class ReadKind(StrEnum):
    GET = "get"
    EXISTS = "exists"
    CHILDREN = "children"
    STAT = "stat"
    EPHEMERALS = "ephemerals"
    SESSIONS = "sessions"


class WatchMode(StrEnum):
    DATA = "data"
    CHILDREN = "children"
    PERSISTENT = "persistent"
    RECURSIVE = "recursive"


#: The one-shot watch a read of each kind may leave behind (other reads set none).
READ_WATCH_MODE = {
    ReadKind.GET: WatchMode.DATA,
    ReadKind.EXISTS: WatchMode.DATA,
    ReadKind.CHILDREN: WatchMode.CHILDREN,
}


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """A watch a client asks a node to (re-)register: its id, path and mode."""

    wid: int
    path: str
    mode: WatchMode


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Hello:
    """Name the connection's client; with ``session``, resume that session (and ``watches``,
    replaying their events after ``after``) once the node has applied up to ``after``.

    ``secret`` proves the name (protocol/secrets.py): the session's secret, or for a connection
    without a session the one its temporary ``client`` id is derived from. Never printed."""

    xid: int
    client: int
    session: bool = False
    after: int = 0
    watches: tuple[WatchSpec, ...] = ()
    secret: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class OpenSessionRequest:
    xid: int
    seq: int
    timeout_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class CloseSessionRequest:
    xid: int
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    """A session heartbeat (or, without a session, a check that the node is in touch)."""

    xid: int


@dataclass(frozen=True, slots=True)
class StatusRequest:
    xid: int


@dataclass(frozen=True, slots=True)
class QueueWatches:
    """What a sequential create asks for besides the node (the lock recipes' one round trip).

    Answered from the serving node's tree as it stands once the create is applied: the parent's
    children with their stats (where the new node stands in the queue), the sibling just before
    it, and one-shot data watches on the new node (``own``: it going ends a hold) and on that
    sibling (``prev``, 0 for none: its going may make us the first), registered from the node's
    czxid so no change after the create is missed, even on a retry served later or elsewhere.
    """

    own: int
    prev: int = 0


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One znode operation, taking effect once for ``(client, seq)`` however often it is sent;
    ``queue`` (sequential creates only) asks for the queue's state and watches with the answer."""

    xid: int
    seq: int
    op: Op
    queue: QueueWatches | None = None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """A read; linearizable unless ``local``, and never older than ``min_zxid`` when local.

    ``watch`` (a watch id) registers a one-shot watch atomically with the read; ``stats`` adds
    each child's stat to a children read; ``session`` names whose ephemerals to list."""

    xid: int
    kind: ReadKind
    path: str = "/"
    stats: bool = False
    watch: int | None = None
    session: int = 0
    local: bool = False
    min_zxid: int = 0


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """Register a watch without a read; ``after`` replays its history from that zxid."""

    xid: int
    wid: int
    path: str
    mode: WatchMode
    after: int | None = None


@dataclass(frozen=True, slots=True)
class UnwatchRequest:
    xid: int
    wid: int


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Answered once the node has applied everything chosen before the request arrived."""

    xid: int


@dataclass(frozen=True, slots=True)
class MembersRequest:
    """The cluster's configuration as the serving node knows it (needs no secret)."""

    xid: int


#: What a ``ReconfigRequest`` may ask for.
RECONFIG_KINDS = ("add", "remove", "replace")


@dataclass(frozen=True, slots=True)
class ReconfigRequest:
    """Change the configuration (``protocol/admin_proof.py`` proves the asker holds the
    cluster secret). ``add``: ``node`` joins at ``peer``/``client`` as a learner, promoted to
    voter once caught up unless ``learner``; ``replace``: the same, and the promotion removes
    voter ``replaces``; ``remove``: ``node`` leaves. ``base`` is the epoch of the configuration
    it changes (-1: the one the serving node has now). Answered once the change is committed
    with the new configuration (a ``MembersReply`` value) or ``ReconfigRefused``."""

    xid: int
    kind: str
    node: int
    peer: str = ""
    client: str = ""
    learner: bool = False
    replaces: int = 0
    base: int = -1
    proof: bytes = field(default=b"", repr=False)


Request = (
    Hello
    | OpenSessionRequest
    | CloseSessionRequest
    | Ping
    | StatusRequest
    | WriteRequest
    | ReadRequest
    | WatchRequest
    | UnwatchRequest
    | SyncRequest
    | MembersRequest
    | ReconfigRequest
)

#: Requests that change the replicated state, so carry a sequence number.
SEQUENCED = (OpenSessionRequest, CloseSessionRequest, WriteRequest)


# ---------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Ok:
    """Success; ``value`` is the operation's result as plain msgpack values."""

    xid: int
    zxid: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """Failure by code; ``index`` is the failing operation of a multi."""

    xid: int
    zxid: int
    code: ErrorCode | str
    message: str = ""
    index: int | None = None


Reply = Ok | Failed


@dataclass(frozen=True, slots=True)
class HelloResult:
    """The value of a successful hello: which node now serves the connection."""

    node: int


@dataclass(frozen=True, slots=True)
class SessionGranted:
    """The value of a successful open_session: the session's id and the timeout granted."""

    session: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as a client sees it (the disk a voter is bound to stays inside)."""

    id: int
    voter: bool
    peer: str
    client: str
    promote: bool = False
    replaces: int = 0


@dataclass(frozen=True, slots=True)
class MembersReply:
    """The value of a members or reconfig request: the latest configuration the serving node
    knows (``epoch``: the slot that chose it; ``active``: the first slot it governs), that
    node's ``commit`` index and ``leader`` (0: none known), the next unused ``next_id``, and
    whether a change is still ``in_flight`` (no other is admitted until it governs)."""

    xid: int
    zxid: int
    epoch: int
    active: int
    commit: int
    leader: int
    next_id: int
    in_flight: bool
    members: tuple[MemberInfo, ...]


# ---------------------------------------------------------------------------- pushes


@dataclass(frozen=True, slots=True)
class WatchEvent:
    wid: int
    kind: str
    path: str
    zxid: int


@dataclass(frozen=True, slots=True)
class WatchEvents:
    """Events of the connection's watches, in zxid order, before anything that reflects them."""

    zxid: int
    events: tuple[WatchEvent, ...]


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The connection's session was closed or expired by the cluster."""

    zxid: int
    session: int


Push = WatchEvents | SessionEnded
FromServer = Ok | Failed | WatchEvents | SessionEnded
