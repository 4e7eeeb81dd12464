"""One znode as the tree stores it: mutable, so an update touches a few fields in place.

Readers never see this record; they get a frozen ``Stat`` and immutable ``bytes``. Keeping the
record private lets the tree update stats in place (cheap) while everything it hands out stays a
fixed picture.

The record also knows its own hash, which the tree sums into its digest: the path, a hash of the
data (cached, so a node holding a megabyte is not rehashed each time only its stat changes) and
every stat field.
"""

from __future__ import annotations

import hashlib
from typing import Any

from paxctl.statemachine.stat import Stat

#: The fields an update may change, saved before the change so a failed multi can undo it.
Scalars = tuple[bytes, bytes | None, int, int, int, int, int]


class Znode:
    """The stored state of one znode (children by name; the tree maps full paths to records)."""

    __slots__ = (
        "children",
        "ctime",
        "cversion",
        "czxid",
        "data",
        "data_hash",
        "ephemeral_owner",
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
    ) -> None:
        self.data = data
        self.data_hash: bytes | None = None
        self.czxid = czxid
        self.mzxid = mzxid
        self.pzxid = pzxid
        self.ctime = ctime
        self.mtime = mtime
        self.version = version
        self.cversion = cversion
        self.ephemeral_owner = ephemeral_owner
        self.children: set[str] = set()

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
            num_children=len(self.children),
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
        """This node's contribution to the tree digest, as a 256-bit integer."""
        if self.data_hash is None:
            self.data_hash = hashlib.blake2b(self.data, digest_size=32).digest()
        h = hashlib.blake2b(digest_size=32, person=b"paxctl-znode")
        h.update(path.encode())
        h.update(b"\x00")
        h.update(self.data_hash)
        h.update(
            b"%d,%d,%d,%d,%d,%d,%d,%d,%d"
            % (
                self.czxid,
                self.mzxid,
                self.pzxid,
                self.ctime,
                self.mtime,
                self.version,
                self.cversion,
                self.ephemeral_owner,
                len(self.children),
            )
        )
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
        ]
