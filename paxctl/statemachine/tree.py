"""The replicated znode tree: ZooKeeper's data model as a pure, deterministic function of the ops.

Every replica applies the same operations with the same zxids and times in the same order, so
``apply`` must compute the same results, errors, sequential names and stats everywhere: it reads
no clock, draws no random number and never lets set order reach a result (children are sorted
before they are returned, encoded or deleted).

Atomicity: every ``apply`` runs under an undo journal. A failing operation (or a failing op
inside a ``Multi``) rolls back whatever it had already changed, so a command either takes effect
entirely or not at all, and a ``Multi`` can apply its operations one after the other (each seeing
the previous ones) without a separate validation pass that could drift from the real one.

Digest: the tree digest is a sum, modulo 2**256, of one hash per node (path, data, stat). The
sum kept covers every node but the dirty ones: the first change to a node after a digest takes
its share out (hashing it once more, which spares every node storing its 256-bit share) and
marks its path dirty; ``digest()`` adds the dirty paths' shares back, so its cost follows the
number of nodes changed since the previous call, not the size of the tree. A rollback leaves the
touched paths dirty, so whatever it restores comes back into the sum at the next digest.

Events: each successful ``apply`` leaves in ``last_events`` the changes it made, as ZooKeeper's
watches name them, so the server can fire watches without diffing the tree. Containers and TTL
nodes are kept in sets of their own, so finding the ones to reap costs what they number, not
what the tree does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgpack

from paxctl.core.codec import MAX_UINT as _MAX_INT
from paxctl.statemachine.errors import (
    BadArguments,
    BadVersion,
    FenceRejected,
    MultiError,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotEmpty,
    SnapshotError,
    ZnodeError,
)
from paxctl.statemachine.ops import (
    MAX_DATA,
    MAX_TTL_MS,
    Check,
    CloseSession,
    Create,
    Delete,
    Fence,
    Multi,
    Once,
    Op,
    OpenSession,
    Put,
    Reap,
    SetData,
    SubOp,
)
from paxctl.statemachine.paths import ROOT, SEQUENCE_DIGITS, split, validate_path
from paxctl.statemachine.paths import join as join_child
from paxctl.statemachine.stat import Stat
from paxctl.statemachine.znode import CONTAINER, PLAIN, TTL, Scalars, Znode

#: What one operation returns: the created path, the new Stat, or None.
SubResult = str | Stat | None
#: What a command returns: a ``SubResult``, an int (``OpenSession``: the new session's id), or a
#: list of them (``Multi``; ``CloseSession`` and ``Reap`` list the paths they deleted).
Result = SubResult | int | list[SubResult]

#: One change for watches: ("created" | "deleted" | "changed" | "children", path).
Event = tuple[str, str]

#: Bumped whenever the snapshot encoding changes incompatibly (2: node mode and TTL).
SNAPSHOT_FORMAT = 2

_MOD = 1 << 256

# Undo journal entries, replayed in reverse by ``_rollback``.
_SAVED, _ADDED, _REMOVED = 0, 1, 2


class DataTree:
    """The znode tree. Mutate only through ``apply``; read through get/exists/children/stat."""

    def __init__(self) -> None:
        self._nodes: dict[str, Znode] = {ROOT: Znode()}
        self._ephemerals: dict[int, set[str]] = {}
        self._containers: set[str] = set()
        self._ttls: set[str] = set()
        #: The changes made by the last ``apply`` (empty if it failed), duplicates dropped.
        self.last_events: tuple[Event, ...] = ()
        self._events: list[Event] = []
        self._journal: list[tuple[Any, ...]] = []
        # Paths changed since the last digest (a dict, used as an insertion-ordered set).
        self._dirty: dict[str, None] = {ROOT: None}
        # Sum of the hashes of every node whose path is not in ``_dirty``.
        self._sum = 0
        self._time = 0  # the time of the last command applied (its int object, to share)
        self._parent = ROOT  # the last parent a child was added to or removed from (to share)

    # ----------------------------------------------------------------------------- reads

    def get(self, path: str) -> tuple[bytes, Stat]:
        node = self._node(path)
        return node.data, node.stat()

    def exists(self, path: str) -> Stat | None:
        node = self._nodes.get(validate_path(path))
        return None if node is None else node.stat()

    def stat(self, path: str) -> Stat:
        return self._node(path).stat()

    def children(self, path: str) -> list[str]:
        """Names (not paths) of the children, sorted so every replica lists them alike."""
        return self._node(path).child_names()

    def ephemerals(self, session: int) -> list[str]:
        """Sorted paths of the ephemerals ``session`` owns (ZooKeeper's ``getEphemerals``)."""
        return sorted(self._ephemerals.get(session, ()))

    def ephemeral_owners(self) -> list[int]:
        """Sorted sessions that own at least one ephemeral (to check them against a table)."""
        return sorted(self._ephemerals)

    def kind(self, path: str) -> tuple[str, int]:
        """``("persistent" | "ephemeral" | "container" | "ttl", ttl_ms)`` of ``path``."""
        return self._node(path).kind()

    def reap_candidates(self, time_ms: int, limit: int = 1000) -> list[str]:
        """Sorted paths a ``Reap`` at ``time_ms`` would delete now, at most ``limit`` of them.

        Only the tracked containers and TTL nodes are looked at. Sorted so every leader proposes
        the same batch; a parent emptied by this batch becomes a candidate in the next one.
        """
        nodes = self._nodes
        found = [
            path
            for tracked in (self._containers, self._ttls)
            for path in tracked
            if not (node := nodes[path]).children and node.expired(time_ms)
        ]
        found.sort()
        return found[: max(limit, 0)]

    def __len__(self) -> int:
        """Number of znodes, the root included."""
        return len(self._nodes)

    def _node(self, path: str) -> Znode:
        node = self._nodes.get(validate_path(path))
        if node is None:
            raise NoNode(path)
        return node

    # ----------------------------------------------------------------------------- apply

    def apply(self, op: Op, zxid: int, time_ms: int, session: int = 0) -> Result:
        """Apply ``op`` as transaction ``zxid`` at ``time_ms``, issued by ``session``.

        ``session`` owns the ephemerals the op creates (0: no session, so ephemerals are refused).
        Raises a ``ZnodeError`` (``MultiError`` for a ``Multi``) and leaves the tree unchanged if
        the operation fails. ``OpenSession`` is refused: the session table is the state
        machine's, as ZooKeeper keeps sessions beside its DataTree rather than in it.
        """
        self._journal.clear()
        self._events.clear()
        self.last_events = ()
        # Commands stamped in the same millisecond share one int for their nodes' times (each
        # command decodes its own, 32 bytes a znode): the values, and so the state, are the same.
        if time_ms == self._time:
            time_ms = self._time
        else:
            self._time = time_ms
        result: Result
        try:
            if isinstance(op, Multi):
                result = self._multi(op, zxid, time_ms, session)
            elif isinstance(op, CloseSession):
                result = self._close_session(op.session, zxid)
            elif isinstance(op, Reap):
                result = self._reap(op, zxid, time_ms)
            elif isinstance(op, OpenSession):
                raise BadArguments("sessions are opened by the state machine, not the tree")
            elif isinstance(op, Once):
                raise BadArguments("one-shot writes are unwrapped by the state machine")
            else:
                result = self._apply_one(op, zxid, time_ms, session)
        except BaseException:
            self._rollback()
            self._events.clear()
            raise
        finally:
            self._journal.clear()
        self.last_events = tuple(dict.fromkeys(self._events))
        self._events.clear()
        return result

    def _multi(self, op: Multi, zxid: int, time_ms: int, session: int) -> list[SubResult]:
        results: list[SubResult] = []
        for index, sub in enumerate(op.ops):
            try:
                results.append(self._apply_one(sub, zxid, time_ms, session))
            except ZnodeError as e:
                raise MultiError(index, e) from e
        return results

    def _apply_one(self, op: SubOp, zxid: int, time_ms: int, session: int) -> SubResult:
        if isinstance(op, Create):
            return self._create(op, zxid, time_ms, session)
        if isinstance(op, SetData):
            return self._set_data(op.path, op.data, op.version, zxid, time_ms)
        if isinstance(op, Put):
            if op.path in self._nodes:
                return self._set_data(op.path, op.data, -1, zxid, time_ms)
            created = self._create(Create(op.path, op.data), zxid, time_ms, session)
            return self._nodes[created].stat()
        if isinstance(op, Delete):
            node = self._versioned(op.path, op.version)
            if node.children:
                raise NotEmpty(op.path)
            self._remove(op.path, zxid)
            return None
        if isinstance(op, Check):
            self._versioned(op.path, op.version)
            return None
        if isinstance(op, Fence):
            self._check_fence(op.path, op.token)
            return None
        raise BadArguments(f"not an operation: {type(op).__name__}")

    def _set_data(self, path: str, data: bytes, version: int, zxid: int, time_ms: int) -> Stat:
        node = self._versioned(path, version)
        self._save(path, node)
        node.data = data
        node.data_hash = None
        node.version += 1
        node.mzxid = zxid
        node.mtime = time_ms
        self._events.append(("changed", path))
        return node.stat()

    def holder(self, path: str) -> str | None:
        """The child of ``path`` with the lowest sequence suffix (a lock's holder), if any."""
        best: tuple[int, str] | None = None
        for name in self._node(path).child_names():
            suffix = name[-SEQUENCE_DIGITS:]
            if len(name) >= SEQUENCE_DIGITS and suffix.isascii() and suffix.isdigit():
                key = (int(suffix), name)
                if best is None or key < best:
                    best = key
        return None if best is None else join_child(path, best[1])

    def _check_fence(self, path: str, token: int) -> None:
        if path not in self._nodes:
            raise FenceRejected(f"{path}: no such lock")
        holder = self.holder(path)
        current = self._nodes[holder].czxid if holder is not None else None
        if current != token:
            held = "nobody holds it" if current is None else f"the holder's token is {current}"
            raise FenceRejected(f"{path}: token {token} is not the current holder's ({held})")

    def _versioned(self, path: str, version: int) -> Znode:
        node = self._nodes.get(path)
        if node is None:
            raise NoNode(path)
        if version != -1 and version != node.version:
            raise BadVersion(f"{path}: expected version {version}, node has {node.version}")
        return node

    def _create(self, op: Create, zxid: int, time_ms: int, session: int) -> str:
        if op.ephemeral and session <= 0:
            raise BadArguments("an ephemeral node needs a session")
        parent_path, name = split(op.path)
        if op.path == ROOT and not op.sequential:
            raise NodeExists(ROOT)
        parent = self._nodes.get(parent_path)
        if parent is None:
            if not op.parents:
                raise NoNode(f"parent of {op.path} does not exist")
            parent = self._create_ancestors(parent_path, zxid, time_ms)
        if op.sequential:
            name += f"{parent.cversion:0{SEQUENCE_DIGITS}d}"
        path = parent_path + name if parent_path == ROOT else f"{parent_path}/{name}"
        if path in self._nodes:
            raise NodeExists(path)
        if parent.ephemeral_owner:
            raise NoChildrenForEphemerals(f"parent {parent_path} is ephemeral")
        owner = session if op.ephemeral else 0
        mode = CONTAINER if op.container else TTL if op.ttl_ms else PLAIN
        node = Znode(op.data, zxid, zxid, zxid, time_ms, time_ms, 0, 0, owner, mode, op.ttl_ms)
        self._add(path, node, zxid)
        return path

    def _create_ancestors(self, path: str, zxid: int, time_ms: int) -> Znode:
        """Create ``path`` and its missing ancestors as empty persistent nodes; return its node."""
        missing = [path]
        parent_path = split(path)[0]
        while parent_path not in self._nodes:
            missing.append(parent_path)
            parent_path = split(parent_path)[0]
        if self._nodes[parent_path].ephemeral_owner:
            raise NoChildrenForEphemerals(f"ancestor {parent_path} is ephemeral")
        for p in reversed(missing):
            self._add(p, Znode(b"", zxid, zxid, zxid, time_ms, time_ms), zxid)
        return self._nodes[path]

    def _close_session(self, session: int, zxid: int) -> list[SubResult]:
        """Delete every ephemeral of ``session`` (ephemerals are leaves, so any order works;
        sorted keeps the result list identical on every replica)."""
        deleted: list[SubResult] = []
        for path in sorted(self._ephemerals.get(session, ())):
            self._remove(path, zxid)
            deleted.append(path)
        return deleted

    def _reap(self, op: Reap, zxid: int, time_ms: int) -> list[SubResult]:
        """Delete the paths still expired at ``time_ms``; skip the rest (the leader's view of
        them may be stale, which is no error)."""
        deleted: list[SubResult] = []
        for path in op.paths:
            node = self._nodes.get(path)
            if node is not None and not node.children and node.expired(time_ms):
                self._remove(path, zxid)
                deleted.append(path)
        return deleted

    # ------------------------------------------------------- the only mutations (journaled)

    def _dirty_node(self, path: str, node: Znode) -> None:
        """Take ``node``'s share out of the sum before its first change since the last digest."""
        if path not in self._dirty:
            self._sum -= node.hash(path)
            self._dirty[path] = None

    def _save(self, path: str, node: Znode) -> None:
        self._dirty_node(path, node)
        self._journal.append((_SAVED, path, node, node.scalars()))

    def _touch_parent(self, path: str, zxid: int) -> tuple[str, Znode]:
        """Count a child change in ``path``'s parent; its path and node. Consecutive changes
        under one parent get the same path object: the watch history keeps each command's
        events (100,000 by default), and a string a create would cost 64 bytes more."""
        parent_path = split(path)[0]
        if parent_path == self._parent:
            parent_path = self._parent
        else:
            self._parent = parent_path
        parent = self._nodes[parent_path]
        self._save(parent_path, parent)
        parent.cversion += 1
        parent.pzxid = zxid
        return parent_path, parent

    def _add(self, path: str, node: Znode, zxid: int) -> None:
        parent_path, parent = self._touch_parent(path, zxid)
        parent.add_child(path)
        self._nodes[path] = node
        self._track(path, node)
        self._journal.append((_ADDED, path))
        self._dirty[path] = None
        self._events += (("created", path), ("children", parent_path))

    def _remove(self, path: str, zxid: int) -> None:
        self._dirty_node(path, self._nodes[path])
        parent_path, parent = self._touch_parent(path, zxid)
        parent.remove_child(path)
        node = self._nodes.pop(path)
        self._untrack(path, node)
        self._journal.append((_REMOVED, path, node))
        self._events += (("deleted", path), ("children", parent_path))

    def _track(self, path: str, node: Znode) -> None:
        """Index ``node`` by owner or mode, so ephemerals and reap candidates need no scan."""
        if node.ephemeral_owner:
            self._ephemerals.setdefault(node.ephemeral_owner, set()).add(path)
        elif node.mode == CONTAINER:
            self._containers.add(path)
        elif node.mode == TTL:
            self._ttls.add(path)

    def _untrack(self, path: str, node: Znode) -> None:
        if node.ephemeral_owner:
            paths = self._ephemerals[node.ephemeral_owner]
            paths.discard(path)
            if not paths:
                del self._ephemerals[node.ephemeral_owner]
        elif node.mode == CONTAINER:
            self._containers.discard(path)
        elif node.mode == TTL:
            self._ttls.discard(path)

    def _rollback(self) -> None:
        """Undo the journal in reverse; touched paths stay dirty, which only costs a rehash."""
        for entry in reversed(self._journal):
            kind, path = entry[0], entry[1]
            parent_path = split(path)[0]
            if kind == _SAVED:
                node: Znode = entry[2]
                saved: Scalars = entry[3]
                node.restore(saved)
            elif kind == _ADDED:
                node = self._nodes.pop(path)
                self._nodes[parent_path].remove_child(path)
                self._untrack(path, node)
            else:
                node = entry[2]
                self._nodes[path] = node
                self._nodes[parent_path].add_child(path)
                self._track(path, node)
        self._journal.clear()

    # ---------------------------------------------------------------------------- digest

    def digest(self) -> bytes:
        """A hash of every path, data and stat in the tree, equal on replicas in the same state.

        Incremental: only nodes changed since the last call are rehashed (see the module
        docstring), so calling it every few hundred slots costs little.
        """
        nodes = self._nodes
        total = self._sum
        for path in self._dirty:
            node = nodes.get(path)
            if node is not None:
                total += node.hash(path)
        self._dirty.clear()
        self._sum = total % _MOD
        return self._seal(self._sum)

    def digest_from_scratch(self) -> bytes:
        """The same digest computed from every node, for tests and audits of the incremental one."""
        total = sum(node.hash(path) for path, node in self._nodes.items()) % _MOD
        return self._seal(total)

    def _seal(self, total: int) -> bytes:
        h = hashlib.blake2b(digest_size=32, person=b"paxctl-tree")
        h.update(b"%d:" % len(self._nodes))
        h.update(total.to_bytes(32, "big"))
        return h.digest()

    # -------------------------------------------------------------------------- snapshots

    def to_wire(self) -> list[Any]:
        """The snapshot as plain msgpack-able values (for embedding in a larger snapshot).

        Nodes go in sorted path order, which puts every parent before its children (a path
        sorts after its prefixes), so decoding can rebuild the tree in one pass.
        """
        nodes = self._nodes
        return [SNAPSHOT_FORMAT, [nodes[p].to_wire(p) for p in sorted(nodes)]]

    def pack_into(self, packer: msgpack.Packer) -> None:
        """Append the encoding of ``to_wire()`` to ``packer`` (made with ``autoreset=False``)
        one node at a time: the same bytes, without first building a list of every node's
        fields, which for a big tree would take more memory than the snapshot itself."""
        nodes = self._nodes
        packer.pack_array_header(2)
        packer.pack(SNAPSHOT_FORMAT)
        packer.pack_array_header(len(nodes))
        for path in sorted(nodes):
            packer.pack(nodes[path].to_wire(path))

    def encode_snapshot(self) -> bytes:
        packer = msgpack.Packer(use_bin_type=True, autoreset=False)
        self.pack_into(packer)
        out: bytes = packer.bytes()
        return out

    @classmethod
    def decode_snapshot(cls, data: bytes) -> DataTree:
        """The tree ``encode_snapshot`` produced; ``SnapshotError`` for anything else."""
        try:
            wire = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as e:  # msgpack raises several unrelated types for bad input
            raise SnapshotError(f"malformed snapshot: {type(e).__name__}") from e
        return cls.from_wire(wire)

    @classmethod
    def from_wire(cls, wire: Any) -> DataTree:
        """Rebuild a tree from ``to_wire`` values, checking every field and the tree's shape."""
        if type(wire) is not list or len(wire) != 2 or wire[0] != SNAPSHOT_FORMAT:
            raise SnapshotError("not a tree snapshot of a known format")
        entries = wire[1]
        if type(entries) is not list or not entries:
            raise SnapshotError("a tree snapshot lists its nodes, the root first")
        return cls._build(entries)

    @classmethod
    def unpack_from(cls, unpacker: msgpack.Unpacker) -> DataTree:
        """``from_wire`` of the next value in ``unpacker``, decoding one node at a time: a big
        tree is rebuilt without first holding a list of every node's fields, which would take
        more memory than the tree and leave the heap fragmented behind it (msgpack's errors
        propagate: the caller reports them)."""
        if unpacker.read_array_header() != 2 or unpacker.unpack() != SNAPSHOT_FORMAT:
            raise SnapshotError("not a tree snapshot of a known format")
        count = unpacker.read_array_header()
        if not count:
            raise SnapshotError("a tree snapshot lists its nodes, the root first")
        return cls._build(unpacker.unpack() for _ in range(count))

    @classmethod
    def _build(cls, entries: Iterable[Any]) -> DataTree:
        tree = cls()
        nodes: dict[str, Znode] = {}
        previous = ""
        for entry in entries:
            path, node = _node_from_wire(entry)
            if path <= previous:
                raise SnapshotError(f"node {path!r} out of order or repeated")
            previous = path
            if path == ROOT:
                if node.ephemeral_owner or node.mode != PLAIN:
                    raise SnapshotError("the root must be a plain persistent node")
            else:
                parent_path = split(path)[0]
                parent = nodes.get(parent_path)
                if parent is None:
                    raise SnapshotError(f"node {path!r} has no parent")
                if parent.ephemeral_owner:
                    raise SnapshotError(f"node {path!r} has an ephemeral parent")
                parent.add_child(path)
            nodes[path] = node
            tree._track(path, node)
        tree._nodes = nodes
        tree._dirty = dict.fromkeys(nodes)
        return tree


def _node_from_wire(entry: Any) -> tuple[str, Znode]:
    if type(entry) is not list or len(entry) != 12:
        raise SnapshotError("a node is [path, data, 8 stat integers, mode, ttl_ms]")
    path, data, *fields = entry
    try:
        validate_path(path)
    except BadArguments as e:
        raise SnapshotError(f"bad path in snapshot: {e}") from e
    if type(data) is not bytes or len(data) > MAX_DATA:
        raise SnapshotError(f"bad data for {path!r}")
    for x in fields:
        if type(x) is not int or not 0 <= x <= _MAX_INT:
            raise SnapshotError(f"bad stat field {x!r} for {path!r}")
    owner, mode, ttl_ms = fields[-3:]
    if mode == TTL:
        good = 1 <= ttl_ms <= MAX_TTL_MS and not owner
    else:
        good = mode in (PLAIN, CONTAINER) and ttl_ms == 0 and not (owner and mode)
    if not good:
        raise SnapshotError(f"bad mode {mode}, ttl {ttl_ms} or owner {owner} for {path!r}")
    # msgpack decodes each field into an int of its own; equal ones share one, as in a tree
    # built by applying commands (a node never changed has one zxid and one time: 64 bytes
    # where five ints took 160).
    czxid, mzxid, pzxid, ctime, mtime = fields[:5]
    if mzxid == czxid:
        fields[1] = czxid
    if pzxid == czxid:
        fields[2] = czxid
    elif pzxid == mzxid:
        fields[2] = mzxid
    if mtime == ctime:
        fields[4] = ctime
    return path, Znode(data, *fields)
