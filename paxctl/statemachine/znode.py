"""One znode as the tree stores it: mutable, so an update touches a few fields in place.

Readers never see this record; they get a frozen ``Stat`` and immutable ``bytes``. Keeping the
record private lets the tree update stats in place (cheap) while everything it hands out stays a
fixed picture.

The record also knows its own hash, which the tree sums into its digest: the path, every stat
field, the mode and TTL, and the data (through a hash of it when it is over 64 bytes; that hash
is cached only for data over ``_CACHED_DATA``, so a node holding a megabyte is not rehashed each
time only its stat changes, while a small node does not carry a 65-byte cache). The mode
(container, TTL) is fixed at creation, so undo never restores it.

Memory: a tree may hold millions of these, so each one holds only what it must (issue 16: 100k
znodes of 100 B under 85 MiB per node). Children are kept as the children's full paths, the
very string objects the tree uses as keys, so a name is not stored a second time; a leaf holds
no container at all; the node's share of the digest is not stored (the tree recomputes it when
the node is first changed after a digest); the owner, mode, TTL and cached data hash, which
most nodes lack, live in a separate record only the nodes that have them hold.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from typing import Any

from paxctl.statemachine.stat import Stat

#: Data up to this size is hashed directly; larger data through a hash of it (part of the
#: digest's definition: changing it changes every replica's digest).
_INLINE_DATA = 64
#: The hash of data over this size is cached on the node: below it, rehashing the data costs
#: less than the cache's memory is worth (a 65-byte object per node).
_CACHED_DATA = 4096

#: Node modes beyond what ``ephemeral_owner`` says: fixed at creation, so never journaled.
PLAIN, CONTAINER, TTL = 0, 1, 2

#: The fields an update may change, saved before the change so a failed multi can undo it.
Scalars = tuple[bytes, bytes | None, int, int, int, int, int]


class _Extra:
    """What few znodes need: an owner (ephemerals), a mode and TTL (containers, TTL nodes), a
    cached hash of large data. Kept apart so a plain node spends no slots on them."""

    __slots__ = ("data_hash", "ephemeral_owner", "mode", "ttl_ms")

    def __init__(self, ephemeral_owner: int, mode: int, ttl_ms: int) -> None:
        self.ephemeral_owner = ephemeral_owner
        self.mode = mode
        self.ttl_ms = ttl_ms
        self.data_hash: bytes | None = None


class Znode:
    """The stored state of one znode (the tree maps full paths to records; ``children`` holds
    the children's paths, sorted, None for a leaf)."""

    # Ten slots: with the object's and the collector's headers, 112 bytes (13 took 144).
    __slots__ = (
        "children",
        "ctime",
        "cversion",
        "czxid",
        "data",
        "extra",
        "mtime",
        "mzxid",
        "pzxid",
        "version",
    )

    def __init__(
        self,
        data: bytes = b"",
        czxid: int = 0,
        mzxid: int = 0,
        pzxid: int = 0,
        ctime: int = 0,
        mtime: int = 0,
        version: int = 0,
        cversion: int = 0,
        ephemeral_owner: int = 0,
        mode: int = PLAIN,
        ttl_ms: int = 0,
    ) -> None:
        self.data = data
        self.czxid = czxid
        self.mzxid = mzxid
        self.pzxid = pzxid
        self.ctime = ctime
        self.mtime = mtime
        self.version = version
        self.cversion = cversion
        special = ephemeral_owner or mode or ttl_ms
        self.extra = _Extra(ephemeral_owner, mode, ttl_ms) if special else None
        # Most znodes are leaves, so a leaf holds None. A parent holds its children's paths in
        # a sorted list: 8 bytes a child where a set took about 40, and listing needs no sort.
        # A child whose name sorts last (sequential nodes, a snapshot restored in path order)
        # is appended; any other is inserted, moving the pointers after it.
        self.children: list[str] | None = None

    @property
    def ephemeral_owner(self) -> int:
        return 0 if self.extra is None else self.extra.ephemeral_owner

    @property
    def mode(self) -> int:
        return PLAIN if self.extra is None else self.extra.mode

    @property
    def ttl_ms(self) -> int:
        return 0 if self.extra is None else self.extra.ttl_ms

    @property
    def data_hash(self) -> bytes | None:
        return None if self.extra is None else self.extra.data_hash

    @data_hash.setter
    def data_hash(self, value: bytes | None) -> None:
        if self.extra is None:
            if value is None:
                return
            self.extra = _Extra(0, PLAIN, 0)
        self.extra.data_hash = value

    def add_child(self, path: str) -> None:
        """Record the child at ``path`` (pass the tree's own key object: it is shared, not
        copied)."""
        children = self.children
        if children is None:
            self.children = [path]
        elif children[-1] < path:
            children.append(path)
        else:
            insort(children, path)

    def remove_child(self, path: str) -> None:
        children = self.children
        if children is not None:
            i = bisect_left(children, path)
            if i < len(children) and children[i] == path:
                del children[i]
            if not children:
                self.children = None

    @property
    def num_children(self) -> int:
        return 0 if self.children is None else len(self.children)

    def child_names(self) -> list[str]:
        """Names, in order (the paths share their parent's prefix, so they sort as their names
        do; the order depends on no replica's history)."""
        if self.children is None:
            return []
        return [p[p.rfind("/") + 1 :] for p in self.children]

    def kind(self) -> tuple[str, int]:
        """``(name, ttl_ms)``: the node's kind as clients and ``DataTree.kind`` name it."""
        if self.ephemeral_owner:
            return "ephemeral", 0
        if self.mode == CONTAINER:
            return "container", 0
        if self.mode == TTL:
            return "ttl", self.ttl_ms
        return "persistent", 0

    def expired(self, time_ms: int) -> bool:
        """Whether ``Reap`` may delete this node at ``time_ms`` (the caller checks it is a leaf).

        A container must have had a child (cversion > 0), or a freshly created one would vanish
        before its first child arrives; a TTL node must be unmodified for its whole TTL.
        """
        if self.mode == CONTAINER:
            return self.cversion > 0
        return self.mode == TTL and self.mtime + self.ttl_ms <= time_ms

    def stat(self) -> Stat:
        return Stat(
            czxid=self.czxid,
            mzxid=self.mzxid,
            pzxid=self.pzxid,
            ctime=self.ctime,
            mtime=self.mtime,
            version=self.version,
            cversion=self.cversion,
            aversion=0,
            ephemeral_owner=self.ephemeral_owner,
            data_length=len(self.data),
            num_children=self.num_children,
        )

    def scalars(self) -> Scalars:
        """What ``SetData`` and child changes may modify (``children`` is undone separately)."""
        return (
            self.data,
            self.data_hash,
            self.mzxid,
            self.pzxid,
            self.mtime,
            self.version,
            self.cversion,
        )

    def restore(self, saved: Scalars) -> None:
        (
            self.data,
            self.data_hash,
            self.mzxid,
            self.pzxid,
            self.mtime,
            self.version,
            self.cversion,
        ) = saved

    def hash(self, path: str) -> int:
        """This node's contribution to the tree digest, as a 256-bit integer.

        Paths hold no NUL, the stat text (with mode and TTL) ends with ";" and the data's length
        precedes it, so no two different nodes feed the hash the same bytes.
        """
        data = self.data
        if len(data) > _CACHED_DATA:
            if self.data_hash is None:
                self.data_hash = hashlib.blake2b(data, digest_size=32).digest()
            data = self.data_hash
        elif len(data) > _INLINE_DATA:
            data = hashlib.blake2b(data, digest_size=32).digest()
        h = hashlib.blake2b(digest_size=32, person=b"paxctl-znode")
        h.update(path.encode())
        h.update(
            b"\x00%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d;%d:"
            % (
                self.czxid,
                self.mzxid,
                self.pzxid,
                self.ctime,
                self.mtime,
                self.version,
                self.cversion,
                self.ephemeral_owner,
                self.num_children,
                self.mode,
                self.ttl_ms,
                len(self.data),
            )
        )
        h.update(data)
        return int.from_bytes(h.digest(), "big")

    def to_wire(self, path: str) -> list[Any]:
        """The snapshot form: everything but the children, which follow from the paths."""
        return [
            path,
            self.data,
            self.czxid,
            self.mzxid,
            self.pzxid,
            self.ctime,
            self.mtime,
            self.version,
            self.cversion,
            self.ephemeral_owner,
            self.mode,
            self.ttl_ms,
        ]
