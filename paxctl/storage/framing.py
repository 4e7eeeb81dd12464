"""Checksummed framing shared by every file storage writes.

A record is ``magic(2) type(1) reserved(1) length(4) crc32(4) payload``; the checksum covers the
type, the length, the payload and the record's own offset in its file, so a flipped bit anywhere
in a record is caught, and a record-shaped run of bytes inside a client's value (framed, if at
all, for some other offset) never passes for a record. The magic lets
recovery tell a torn tail (nothing valid after the bad record) from corruption in the middle
(valid records after it) without an expensive byte-by-byte search: candidates are found with
``bytes.find`` and confirmed by their checksum.

Files start with a header: ``magic(4) version(2) kind(2) cluster_id(16) node_id(8) first(8)
crc32(4)``, so a file copied from another node or another cluster is refused, not replayed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

RECORD_MAGIC = b"\xa7\x5c"
_REC = struct.Struct(">2sBBII")
RECORD_HEADER = _REC.size
#: No record is larger than this; a length field above it is corruption, not a big record.
MAX_RECORD = 64 * 1024 * 1024

FILE_MAGIC = b"PXST"
#: Bumped whenever what the files hold changes meaning, not only their framing: a node must refuse
#: files it would read differently. 2: commands and snapshots of cluster-assigned sessions
#: (an old log replayed by new code would silently drop the writes of its sessions). 3: sessions
#: carry the hash of their secret (an old ``OpenSession`` names none, so its session could
#: never be resumed). 4: the metadata names the node's disk and snapshots carry the cluster's
#: configurations (issue 15: an old snapshot says nothing of who votes).
FORMAT_VERSION = 4
_HDR = struct.Struct(">4sHH16sQQI")
FILE_HEADER = _HDR.size


class CorruptionError(Exception):
    """Stored state failed a check. The message names the file and offset and says what to do."""


def _crc(rtype: int, payload: bytes, at: int) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">BIQ", rtype, len(payload), at)))


def frame(rtype: int, payload: bytes, *, at: int) -> bytes:
    """Frame ``payload`` as a record that will start at offset ``at`` of its file."""
    return _REC.pack(RECORD_MAGIC, rtype, 0, len(payload), _crc(rtype, payload, at)) + payload


@dataclass(frozen=True)
class Record:
    offset: int
    rtype: int
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + RECORD_HEADER + len(self.payload)


def parse_at(data: bytes, offset: int) -> Record | None:
    """The valid record at ``offset``, or None if there is none (short, bad magic or crc)."""
    if offset + RECORD_HEADER > len(data):
        return None
    magic, rtype, _, length, crc = _REC.unpack_from(data, offset)
    if magic != RECORD_MAGIC or length > MAX_RECORD:
        return None
    end = offset + RECORD_HEADER + length
    if end > len(data):
        return None
    payload = data[offset + RECORD_HEADER : end]
    if _crc(rtype, payload, offset) != crc:
        return None
    return Record(offset, rtype, payload)


def peek(header: bytes) -> tuple[int, int] | None:
    """``(type, payload length)`` from a record's header alone, or None if it is not one:
    for walking a file already verified whole, without reading its payloads."""
    if len(header) < RECORD_HEADER:
        return None
    magic, rtype, _, length, _ = _REC.unpack_from(header)
    if magic != RECORD_MAGIC or length > MAX_RECORD:
        return None
    return rtype, length


def find_valid_after(data: bytes, offset: int) -> int | None:
    """The offset of the first valid record after ``offset``, if any (corruption evidence)."""
    pos = data.find(RECORD_MAGIC, offset + 1)
    while pos != -1:
        if parse_at(data, pos) is not None:
            return pos
        pos = data.find(RECORD_MAGIC, pos + 1)
    return None


@dataclass(frozen=True)
class FileHeader:
    kind: int
    cluster_id: bytes
    node_id: int
    first: int

    def encode(self) -> bytes:
        body = _HDR.pack(
            FILE_MAGIC, FORMAT_VERSION, self.kind, self.cluster_id, self.node_id, self.first, 0
        )[:-4]
        return body + struct.pack(">I", zlib.crc32(body))

    @staticmethod
    def decode(data: bytes, where: str) -> FileHeader:
        if len(data) < FILE_HEADER:
            raise CorruptionError(f"{where}: file header is truncated ({len(data)} bytes)")
        magic, version, kind, cluster, node, first, crc = _HDR.unpack_from(data)
        if magic != FILE_MAGIC:
            raise CorruptionError(f"{where}: not a paxctl file (bad magic at offset 0)")
        if zlib.crc32(data[: FILE_HEADER - 4]) != crc:
            raise CorruptionError(f"{where}: file header checksum mismatch at offset 0")
        if version != FORMAT_VERSION:
            raise CorruptionError(
                f"{where}: format version {version}, this paxctl reads {FORMAT_VERSION}"
            )
        return FileHeader(kind, cluster, node, first)
