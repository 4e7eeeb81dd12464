"""Operations on the znode tree, and their encoding as the bytes of a replicated command.

An operation is a frozen value checked when it is built: its path is valid, its data is bytes
within ``MAX_DATA``, its flags are booleans. So an operation that exists is one the tree can
apply, and the only failures left at apply time are the ones that depend on the tree (NoNode,
BadVersion, ...), which every replica reaches identically.

Decoding trusts nothing, because these bytes come from clients: anything that is not exactly an
encoding produced by ``encode_op`` raises ``BadArguments`` (or ``DataTooLarge`` for a well-formed
operation over the limits), never another exception and never a half-built operation.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

import msgpack

from paxctl.core.ints import MAX_UINT as _MAX_INT
from paxctl.lazyclass import dataclass
from paxctl.statemachine.errors import BadArguments, DataTooLarge
from paxctl.statemachine.paths import MAX_PATH_BYTES, ROOT, validate_path

#: Largest data a znode may hold (ZooKeeper's default ``jute.maxbuffer`` is about this).
MAX_DATA = 1024 * 1024

#: Most operations in one ``Multi``: bounds the work and the size of one replicated command.
MAX_MULTI_OPS = 1000

#: Largest encoded operation or command accepted, checked before unpacking anything. Every
#: operation that can be built encodes within it (data is bounded in total, paths each).
MAX_REQUEST_BYTES = MAX_DATA + MAX_MULTI_OPS * (MAX_PATH_BYTES + 64)

#: Bumped whenever the encoding of a command changes incompatibly (2: sessions, containers,
#: TTL nodes and reaping; 3: ``OpenSession`` names no session, the cluster assigns its id;
#: 4: ``OpenSession`` carries the hash of the session's secret).
COMMAND_FORMAT = 4

#: Client ids below this are the cluster's own and need no session; client sessions start here.
FIRST_CLIENT_ID = 1 << 16

#: Client ids with this bit set are temporary: a client's own id, derived from its secret
#: (protocol/secrets.py), under which it opens its session (and which it uses when it has
#: none). Session ids are assigned by the cluster (the zxid of the ``OpenSession`` that created
#: them) and lie below it, so the two
#: never meet: ``FIRST_CLIENT_ID <= session < TEMP_CLIENT_BIT <= temporary id < 2**63``.
TEMP_CLIENT_BIT = 1 << 62


def is_session_id(client: int) -> bool:
    """Whether ``client`` is in the range of ids the cluster assigns to sessions."""
    return FIRST_CLIENT_ID <= client < TEMP_CLIENT_BIT


def is_temporary_id(client: int) -> bool:
    """Whether ``client`` is a connection's temporary id (see ``TEMP_CLIENT_BIT``)."""
    return TEMP_CLIENT_BIT <= client <= _MAX_INT


#: Bytes of the hash of a session's secret that the cluster keeps (see protocol/secrets.py):
#: the secret itself never leaves the client, so neither logs nor snapshots can leak it.
SECRET_HASH_BYTES = 16

#: The hash of a session opened without one: no secret hashes to it (but with odds of
#: 2**-128), so such a session is never resumed by a hello. Only tests open them.
NO_SECRET_HASH = bytes(SECRET_HASH_BYTES)


#: The digest audit's client id (the server keeps its own copy of this value).
SYSTEM_CLIENT = 0

#: The client id of the leader's session expiry and ``Reap`` commands; only it may reap or close
#: another client's session, so no client can delete what it does not own.
REAPER_CLIENT = 1

#: Longest session timeout accepted, in milliseconds (ZooKeeper negotiates an int of them).
MAX_SESSION_TIMEOUT_MS = 2**31

#: Longest TTL accepted, in milliseconds (ZooKeeper's limit for TTL nodes is about this).
MAX_TTL_MS = 2**40

#: Most paths in one ``Reap``: bounds the work of one replicated command, as for ``Multi``.
MAX_REAP_PATHS = 1000


def _check_data(data: object) -> None:
    if type(data) is not bytes:
        raise BadArguments(f"data must be bytes, not {type(data).__name__}")
    if len(data) > MAX_DATA:
        raise DataTooLarge(f"data of {len(data)} bytes exceeds {MAX_DATA}")


def _check_flag(value: object, what: str) -> None:
    if type(value) is not bool:
        raise BadArguments(f"{what} must be a bool, not {type(value).__name__}")


def _check_int(value: object, low: int, high: int, what: str) -> None:
    if type(value) is not int or not low <= value <= high:
        raise BadArguments(f"{what} must be an integer in [{low}, {high}], not {value!r}")


def _check_version(version: object) -> None:
    if type(version) is not int or not -1 <= version <= _MAX_INT:
        raise BadArguments(f"version must be an integer >= -1, not {version!r}")


@dataclass(frozen=True, slots=True)
class Create:
    """Create ``path`` holding ``data``.

    ``sequential`` appends the parent's child counter ("%010d"); ``parents`` also creates missing
    ancestors as empty persistent nodes in the same transaction; ``ephemeral`` ties the node to
    the session that issues the command, so ``CloseSession`` removes it. A ``container`` is
    reaped once its last child goes, a node with ``ttl_ms`` > 0 once it has stayed childless and
    unmodified that long (see ``Reap``). The three kinds exclude each other, and a container
    cannot be sequential (as in ZooKeeper's ``CreateMode``).
    """

    path: str
    data: bytes = b""
    sequential: bool = False
    parents: bool = False
    ephemeral: bool = False
    container: bool = False
    ttl_ms: int = 0

    def __post_init__(self) -> None:
        _check_flag(self.sequential, "sequential")
        _check_flag(self.parents, "parents")
        _check_flag(self.ephemeral, "ephemeral")
        _check_flag(self.container, "container")
        _check_int(self.ttl_ms, 0, MAX_TTL_MS, "ttl_ms")
        if self.ephemeral + self.container + (self.ttl_ms > 0) > 1:
            raise BadArguments("ephemeral, container and ttl_ms exclude each other")
        if self.container and self.sequential:
            raise BadArguments("a container cannot be sequential")
        validate_path(self.path, sequential=self.sequential)
        _check_data(self.data)


@dataclass(frozen=True, slots=True)
class SetData:
    """Replace the data of ``path`` if its version is ``version`` (-1: any version)."""

    path: str
    data: bytes
    version: int = -1

    def __post_init__(self) -> None:
        validate_path(self.path)
        _check_data(self.data)
        _check_version(self.version)


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the leaf ``path`` if its version is ``version`` (-1: any version)."""

    path: str
    version: int = -1

    def __post_init__(self) -> None:
        validate_path(self.path)
        if self.path == ROOT:
            raise BadArguments("the root cannot be deleted")
        _check_version(self.version)


@dataclass(frozen=True, slots=True)
class Check:
    """Fail unless ``path`` exists at ``version`` (-1: exists at all); a guard inside ``Multi``."""

    path: str
    version: int

    def __post_init__(self) -> None:
        validate_path(self.path)
        _check_version(self.version)


@dataclass(frozen=True, slots=True)
class Fence:
    """Fail unless the holder of the lock at ``path`` is the one with fencing ``token``.

    The holder is the child of ``path`` with the lowest 10-digit sequence suffix (the recipe
    for exclusive locks and elections); its token is that node's czxid. A holder whose session
    expired has lost its node, so its token no longer matches: a guard inside ``Multi`` that
    keeps a stale holder from clobbering shared state kept in the tree.
    """

    path: str
    token: int

    def __post_init__(self) -> None:
        validate_path(self.path)
        _check_int(self.token, 0, _MAX_INT, "token")


@dataclass(frozen=True, slots=True)
class Put:
    """Create ``path`` holding ``data`` if it is absent, else replace its data (any version):
    etcd's put, one command where a client would otherwise set, hear NoNode and create (two
    rounds, and a race with another creator). The result is the node's stat afterwards; a node
    it creates is plain and persistent, and its parent must exist."""

    path: str
    data: bytes

    def __post_init__(self) -> None:
        validate_path(self.path)
        _check_data(self.data)


#: The operations a ``Multi`` may hold.
SubOp = Create | SetData | Delete | Check | Fence | Put


@dataclass(frozen=True, slots=True)
class Multi:
    """Apply ``ops`` all or nothing, under one zxid.

    The total data is bounded by ``MAX_DATA`` as a single request is (ZooKeeper bounds the whole
    request packet), so a multi cannot carry an unbounded amount into one replicated command.
    """

    ops: tuple[SubOp, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple | list):
            raise BadArguments("multi ops must be a tuple")
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) > MAX_MULTI_OPS:
            raise BadArguments(f"multi of {len(self.ops)} operations exceeds {MAX_MULTI_OPS}")
        total = 0
        for op in self.ops:
            if not isinstance(op, Create | SetData | Delete | Check | Fence | Put):
                raise BadArguments(f"a multi cannot hold {type(op).__name__}")
            if isinstance(op, Create | SetData | Put):
                total += len(op.data)
        if total > MAX_DATA:
            raise DataTooLarge(f"multi carries {total} bytes of data, over {MAX_DATA}")


@dataclass(frozen=True, slots=True)
class CloseSession:
    """End ``session``: delete every ephemeral it owns, in one transaction (as ZooKeeper does).

    Computing the victims at apply time, not when the command is proposed, is what makes this
    safe: an ephemeral created by a command ordered just before the close is still removed.
    """

    session: int

    def __post_init__(self) -> None:
        if type(self.session) is not int or not 1 <= self.session <= _MAX_INT:
            raise BadArguments(f"session must be a positive integer, not {self.session!r}")


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Open a new session with ``timeout_ms`` in the replicated session table.

    The command names no session: its id is the zxid at which it is applied, which every replica
    computes alike and which is never used again, so an ended session's id never comes back
    (see ``StateMachine``). It is issued under the connection's temporary id and its result is
    the new session's id. Replicating the table is what lets a new leader keep expiring the
    sessions the old one tracked, and lets every replica refuse writes from a session already
    closed.

    ``secret_hash`` is the hash of the secret the opening client holds: a hello resuming the
    session must prove that secret (as ZooKeeper's session password), so a session id that
    anyone can list is no key to the session.
    """

    timeout_ms: int
    secret_hash: bytes = field(default=NO_SECRET_HASH, repr=False)

    def __post_init__(self) -> None:
        _check_int(self.timeout_ms, 1, MAX_SESSION_TIMEOUT_MS, "timeout_ms")
        h = self.secret_hash
        if type(h) is not bytes or len(h) != SECRET_HASH_BYTES:
            raise BadArguments(f"secret_hash must be {SECRET_HASH_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Reap:
    """Delete those of ``paths`` that are still expired containers or TTL nodes.

    The leader picks the candidates, but each is re-checked when the command applies, at the
    command's time: a node that gained a child or was modified in between survives.
    """

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.paths, tuple | list):
            raise BadArguments("reap paths must be a tuple")
        object.__setattr__(self, "paths", tuple(self.paths))
        if len(self.paths) > MAX_REAP_PATHS:
            raise BadArguments(f"reap of {len(self.paths)} paths exceeds {MAX_REAP_PATHS}")
        for path in self.paths:
            validate_path(path)


#: What a ``Once`` may carry: the writes that need no session.
OnceOp = Create | SetData | Delete | Check | Fence | Put | Multi


@dataclass(frozen=True, slots=True)
class Once:
    """``op`` written without a session: a one-shot client's write, one consensus round where
    opening a session, writing and closing it cost three.

    It is issued under the connection's temporary id, and the state machine keeps its outcome
    in a bounded table of its own (statemachine/once.py) so a retry is applied once. ``after``
    is a zxid the client had seen before it first sent the write (the same on every retry): any
    earlier attempt was applied after it, which is how the table tells a retry it may have
    forgotten from a new write. An ephemeral needs a session, so ``op`` may create none.
    """

    after: int
    op: OnceOp

    def __post_init__(self) -> None:
        _check_int(self.after, 0, _MAX_INT, "after")
        if once_op(self.op) is None:
            what = type(self.op).__name__
            raise BadArguments(f"a one-shot write cannot carry {what} (nor an ephemeral)")


def once_op(op: object) -> OnceOp | None:
    """``op`` if it may be written one-shot (see ``Once``), else None: it needs a session."""
    if not isinstance(op, Create | SetData | Delete | Check | Fence | Put | Multi):
        return None
    subs = op.ops if isinstance(op, Multi) else (op,)
    return None if any(isinstance(o, Create) and o.ephemeral for o in subs) else op


#: Every operation a command may carry.
Op = (
    Create
    | SetData
    | Delete
    | Check
    | Fence
    | Put
    | Multi
    | Once
    | CloseSession
    | OpenSession
    | Reap
)


def _op_to_wire(op: object) -> list[Any]:
    if isinstance(op, Create):
        return [
            "create",
            op.path,
            op.data,
            op.sequential,
            op.parents,
            op.ephemeral,
            op.container,
            op.ttl_ms,
        ]
    if isinstance(op, SetData):
        return ["set", op.path, op.data, op.version]
    if isinstance(op, Delete):
        return ["delete", op.path, op.version]
    if isinstance(op, Check):
        return ["check", op.path, op.version]
    if isinstance(op, Fence):
        return ["fence", op.path, op.token]
    if isinstance(op, Put):
        return ["put", op.path, op.data]
    if isinstance(op, Multi):
        return ["multi", [_op_to_wire(sub) for sub in op.ops]]
    if isinstance(op, Once):
        return ["once", op.after, _op_to_wire(op.op)]
    if isinstance(op, CloseSession):
        return ["close", op.session]
    if isinstance(op, OpenSession):
        return ["open", op.timeout_ms, op.secret_hash]
    if isinstance(op, Reap):
        return ["reap", list(op.paths)]
    raise BadArguments(f"not an operation: {type(op).__name__}")


def _fields(x: list[Any], n: int, what: str) -> list[Any]:
    if len(x) != n:
        raise BadArguments(f"{what}: expected {n} fields, got {len(x)}")
    return x[1:]


def _sub_op_from_wire(x: Any) -> SubOp:
    """Rebuild an operation a multi may hold; the constructors check every field."""
    kind = _kind(x)
    if kind == "create":
        path, data, sequential, parents, ephemeral, container, ttl_ms = _fields(x, 8, kind)
        return Create(path, data, sequential, parents, ephemeral, container, ttl_ms)
    if kind == "set":
        path, data, version = _fields(x, 4, kind)
        return SetData(path, data, version)
    if kind == "delete":
        path, version = _fields(x, 3, kind)
        return Delete(path, version)
    if kind == "check":
        path, version = _fields(x, 3, kind)
        return Check(path, version)
    if kind == "fence":
        path, token = _fields(x, 3, kind)
        return Fence(path, token)
    if kind == "put":
        path, data = _fields(x, 3, kind)
        return Put(path, data)
    raise BadArguments(
        f"unknown operation {kind!r} (a multi holds create/set/delete/check/fence/put)"
    )


def _multi_from_wire(x: Any) -> Multi:
    (subs,) = _fields(x, 2, "multi")
    if type(subs) is not list:
        raise BadArguments("multi: expected a list of operations")
    if len(subs) > MAX_MULTI_OPS:
        raise BadArguments(f"multi of {len(subs)} operations exceeds {MAX_MULTI_OPS}")
    return Multi(tuple(_sub_op_from_wire(sub) for sub in subs))


def _op_from_wire(x: Any) -> Op:
    kind = _kind(x)
    if kind == "multi":
        return _multi_from_wire(x)
    if kind == "once":
        after, inner = _fields(x, 3, kind)
        # One level only: what a once carries is a multi or a single write, never a session
        # op or another once (``Once`` checks the kind; the decoder never recurses further).
        op = _multi_from_wire(inner) if _kind(inner) == "multi" else _sub_op_from_wire(inner)
        return Once(after, op)
    if kind == "close":
        (session,) = _fields(x, 2, kind)
        return CloseSession(session)
    if kind == "open":
        timeout_ms, secret_hash = _fields(x, 3, kind)
        return OpenSession(timeout_ms, secret_hash)
    if kind == "reap":
        (paths,) = _fields(x, 2, kind)
        if type(paths) is not list:
            raise BadArguments("reap: expected a list of paths")
        return Reap(tuple(paths))
    return _sub_op_from_wire(x)


def _kind(x: Any) -> str:
    if type(x) is not list or not x or type(x[0]) is not str:
        raise BadArguments("an operation must be a list starting with its kind")
    kind: str = x[0]
    return kind


def _unpack(data: object) -> Any:
    if type(data) is not bytes:
        raise BadArguments(f"expected bytes, not {type(data).__name__}")
    if len(data) > MAX_REQUEST_BYTES:
        raise DataTooLarge(f"request of {len(data)} bytes exceeds {MAX_REQUEST_BYTES}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise BadArguments(f"malformed encoding: {type(e).__name__}") from e


def _pack(x: Any) -> bytes:
    out: bytes = msgpack.packb(x, use_bin_type=True)
    return out


def encode_op(op: Op) -> bytes:
    """The bytes of one operation (what a client sends)."""
    return _pack(_op_to_wire(op))


def decode_op(data: bytes) -> Op:
    """The operation ``encode_op`` produced, or ``BadArguments`` for anything else."""
    return _op_from_wire(_unpack(data))


def encode_command(time_ms: int, op: Op) -> bytes:
    """The bytes of a replicated command: the leader's timestamp and the operation.

    The leader stamps the time so that every replica computes the same ctime/mtime (principle:
    replicate commands, not effects).
    """
    if type(time_ms) is not int or not 0 <= time_ms <= _MAX_INT:
        raise BadArguments(f"time must be a non-negative integer, not {time_ms!r}")
    return _pack([COMMAND_FORMAT, time_ms, _op_to_wire(op)])


def decode_command(data: bytes) -> tuple[int, Op]:
    """``(time_ms, op)`` from ``encode_command`` bytes, or ``BadArguments``."""
    x = _unpack(data)
    if type(x) is not list or len(x) != 3:
        raise BadArguments("a command must be [format, time, operation]")
    fmt, time_ms, op = x
    if fmt != COMMAND_FORMAT or type(fmt) is not int:
        raise BadArguments(f"unknown command format {fmt!r}")
    if type(time_ms) is not int or not 0 <= time_ms <= _MAX_INT:
        raise BadArguments(f"time must be a non-negative integer, not {time_ms!r}")
    return time_ms, _op_from_wire(op)


def restamp_command(data: bytes, time_ms: int) -> bytes:
    """The same command stamped with ``time_ms`` (the leader's clock, when it proposes).

    Bytes that are not a well-formed command are returned unchanged: applying them fails the
    same way on every replica, and a leader must never fail on what a peer forwarded.
    """
    if type(time_ms) is not int or not 0 <= time_ms <= _MAX_INT:
        raise BadArguments(f"time must be a non-negative integer, not {time_ms!r}")
    try:
        x = _unpack(data)
    except (BadArguments, DataTooLarge):
        return data
    if type(x) is not list or len(x) != 3 or x[0] != COMMAND_FORMAT:
        return data
    return _pack([x[0], time_ms, x[2]])
