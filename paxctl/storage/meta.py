"""Node metadata: identity, the acceptor's promise, the highest round issued, compaction point.

It is small and rewritten whole, atomically: write a temporary file, fsync it, rename it over the
old one, fsync the directory. A reader sees the old or the new version, never a mix, and a
checksum catches a flipped bit (which stops the node: a promise it cannot trust is one it might
break).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from paxctl.core.types import ZERO_BALLOT, Ballot
from paxctl.storage.framing import (
    FILE_HEADER,
    CorruptionError,
    FileHeader,
    frame,
    parse_at,
)
from paxctl.storage.fs import FileSystem

META = "meta"
_META_TMP = "meta.tmp"
KIND_META = 1
_REC_META = 1


@dataclass(frozen=True)
class Identity:
    """Which cluster and which node a data directory belongs to; ids are never reused."""

    cluster_id: bytes
    node_id: int

    def __post_init__(self) -> None:
        if len(self.cluster_id) != 16:
            raise ValueError("cluster_id must be 16 bytes")


@dataclass(frozen=True)
class Meta:
    promised: Ballot = ZERO_BALLOT
    max_round: int = 0
    #: Votes and chosen values up to this slot were dropped behind a snapshot.
    compacted: int = 0
    #: Index of the first record of the oldest log segment kept, and of the newest segment.
    wal_start: int = 1
    wal_last: int = 1
    #: Which data directory this is: 0 for a founding member's (bootstrapped), a random
    #: nonzero 63-bit number for one a node made when it joined (``--join``). A voter votes
    #: only with the disk it was promoted with, so an emptied directory never votes again.
    disk: int = 0


def write_meta(fs: FileSystem, identity: Identity, meta: Meta, sync: bool = True) -> None:
    header = FileHeader(KIND_META, identity.cluster_id, identity.node_id, 0).encode()
    body = msgpack.packb(
        [
            list(meta.promised),
            meta.max_round,
            meta.compacted,
            meta.wal_start,
            meta.wal_last,
            meta.disk,
        ],
        use_bin_type=True,
    )
    f = fs.create(_META_TMP)
    try:
        f.write(header + frame(_REC_META, body, at=FILE_HEADER))
        if sync:
            f.sync()
    finally:
        f.close()
    fs.rename(_META_TMP, META)
    if sync:
        fs.sync_dir("")


def read_meta(fs: FileSystem, identity: Identity, where: str) -> Meta:
    data = fs.read(META)
    header = FileHeader.decode(data, where)
    check_identity(header, identity, where)
    rec = parse_at(data, FILE_HEADER)
    if rec is None or rec.rtype != _REC_META or rec.end != len(data):
        raise CorruptionError(
            f"{where}: metadata record is damaged at offset {FILE_HEADER} (checksum mismatch "
            "or truncated). The node's promises cannot be trusted: it must not vote. "
            "Move the data directory aside and rejoin the cluster as a new node."
        )
    try:
        (r, n), max_round, compacted, wal_start, wal_last, disk = _decode(rec.payload)
        return Meta(
            Ballot(int(r), int(n)),
            int(max_round),
            int(compacted),
            int(wal_start),
            int(wal_last),
            int(disk),
        )
    except (ValueError, TypeError) as exc:
        raise CorruptionError(f"{where}: metadata record does not decode: {exc}") from None


def _decode(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False)


def check_identity(header: FileHeader, identity: Identity, where: str) -> None:
    if header.cluster_id != identity.cluster_id or header.node_id != identity.node_id:
        raise CorruptionError(
            f"{where}: belongs to node {header.node_id} of cluster {header.cluster_id.hex()}, "
            f"not node {identity.node_id} of cluster {identity.cluster_id.hex()}"
        )
