"""A znode's metadata, field for field ZooKeeper's ``Stat``.

Clients use these numbers for more than display: ``version`` for compare-and-set, ``czxid`` and
the sequential suffix as fencing tokens, ``pzxid``/``cversion`` to notice child changes, so every
replica must compute them identically (the tree does) and they must survive a snapshot exactly.
The value is frozen: a ``Stat`` handed to a client is a picture of one moment and never changes
under it.
"""

from __future__ import annotations

from dataclasses import astuple

from paxctl.lazyclass import dataclass


@dataclass(frozen=True, slots=True)
class Stat:
    """The metadata of one znode at one moment (times are milliseconds, as in ZooKeeper)."""

    czxid: int = 0
    mzxid: int = 0
    pzxid: int = 0
    ctime: int = 0
    mtime: int = 0
    version: int = 0
    cversion: int = 0
    aversion: int = 0  # ACL version: ACLs are not modelled yet, so it is always 0.
    ephemeral_owner: int = 0
    data_length: int = 0
    num_children: int = 0

    def to_dict(self) -> dict[str, int]:
        """The fields under ZooKeeper's names, as ``zkCli stat`` and kazoo show them."""
        return {
            "czxid": self.czxid,
            "mzxid": self.mzxid,
            "pzxid": self.pzxid,
            "ctime": self.ctime,
            "mtime": self.mtime,
            "version": self.version,
            "cversion": self.cversion,
            "aversion": self.aversion,
            "ephemeralOwner": self.ephemeral_owner,
            "dataLength": self.data_length,
            "numChildren": self.num_children,
        }

    def to_list(self) -> list[int]:
        """The fields in declaration order: the compact form used on the wire and in snapshots."""
        return list(astuple(self))

    @classmethod
    def from_list(cls, fields: list[int]) -> Stat:
        """The inverse of ``to_list``; the caller has checked the count and types."""
        return cls(*fields)
