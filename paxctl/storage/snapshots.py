"""Snapshot files: the state machine at a slot, with the configuration it was taken under.

A snapshot is written in chunks to a temporary name, fsynced, renamed into place, the directory
fsynced, and then read back and verified before anything behind it may be dropped from the log
(Paxos Made Live lost data to a snapshot that was trusted before it was checked). The last few
valid snapshots are kept; recovery takes the newest that verifies.
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_right

import msgpack

from paxctl.core.codec import CodecError, decode_snapshot, encode_snapshot
from paxctl.core.types import Snapshot
from paxctl.storage.framing import (
    FILE_HEADER,
    RECORD_HEADER,
    CorruptionError,
    FileHeader,
    frame,
    parse_at,
    peek,
)
from paxctl.storage.fs import FileSystem, MappedFile
from paxctl.storage.meta import Identity, check_identity

SNAP_DIR = "snap"
KIND_SNAP = 3
_REC_CHUNK = 1
_REC_END = 2
_END = struct.Struct(">QII")  # total length, crc32 of the whole body, chunk count
CHUNK = 1024 * 1024


def snapshot_name(slot: int) -> str:
    return f"{SNAP_DIR}/{slot:020d}.snap"


def snapshot_slots(fs: FileSystem) -> list[int]:
    """Slots of the snapshot files present, oldest first."""
    out = []
    for name in fs.listdir(SNAP_DIR):
        stem, _, ext = name.partition(".")
        if ext == "snap" and stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def write_snapshot(
    fs: FileSystem, identity: Identity, snap: Snapshot, label: str, chunk: int = CHUNK
) -> None:
    """Write, sync, rename and verify one snapshot; raise if it does not read back intact."""
    body = msgpack.packb(encode_snapshot(snap), use_bin_type=True)
    view = memoryview(body)  # pieces are views of the body: a big snapshot is not copied again
    tmp = f"{SNAP_DIR}/{snap.slot:020d}.tmp"
    header = FileHeader(KIND_SNAP, identity.cluster_id, identity.node_id, snap.slot)
    f = fs.create(tmp)
    try:
        f.write(header.encode())
        starts = range(0, len(body), chunk) or range(1)
        offset = FILE_HEADER
        for start in starts:
            record = frame(_REC_CHUNK, view[start : start + chunk], at=offset)  # type: ignore[arg-type]
            f.write(record)
            offset += len(record)
        f.write(frame(_REC_END, _END.pack(len(body), zlib.crc32(body), len(starts)), at=offset))
        f.sync()
    finally:
        f.close()
    fs.rename(tmp, snapshot_name(snap.slot))
    fs.sync_dir(SNAP_DIR)
    if _read_body(fs, identity, snap.slot, label) != body:
        raise CorruptionError(f"{label}/{snapshot_name(snap.slot)}: did not read back intact")


def read_snapshot(fs: FileSystem, identity: Identity, slot: int, label: str) -> Snapshot:
    where = f"{label}/{snapshot_name(slot)}"
    body = _read_body(fs, identity, slot, label)
    try:
        snap = decode_snapshot(msgpack.unpackb(body, raw=False))
    except (ValueError, TypeError, CodecError) as exc:
        raise CorruptionError(f"{where}: snapshot does not decode: {exc}") from None
    if snap.slot != slot:
        raise CorruptionError(f"{where}: holds slot {snap.slot}, named for slot {slot}")
    return snap


def _read_body(fs: FileSystem, identity: Identity, slot: int, label: str) -> bytes:
    """The snapshot file's body, every record and the whole checked (pieces are views of the
    file's bytes until they are joined: one copy, not two)."""
    path = snapshot_name(slot)
    where = f"{label}/{path}"
    raw = fs.read(path)
    data = memoryview(raw)
    header = FileHeader.decode(raw, where)
    check_identity(header, identity, where)
    if header.kind != KIND_SNAP or header.first != slot:
        raise CorruptionError(f"{where}: header says kind {header.kind}, slot {header.first}")
    pieces = []
    offset = FILE_HEADER
    while True:
        rec = parse_at(data, offset)  # type: ignore[arg-type]
        if rec is None:
            raise CorruptionError(f"{where}: bad or truncated chunk at offset {offset}")
        if rec.rtype == _REC_END:
            break
        pieces.append(rec.payload)
        offset = rec.end
    length, crc, count = _END.unpack(rec.payload)
    body = b"".join(pieces)
    if len(body) != length or zlib.crc32(body) != crc or len(pieces) != count:
        raise CorruptionError(f"{where}: chunks do not add up to the recorded length/checksum")
    return body


class StoredBytes:
    """The application's bytes of a snapshot on disk, read from its file when asked for.

    A node keeps its newest snapshot to serve peers that fall behind. Held in memory, it costs
    as much as the state (16 MiB for 100,000 znodes of 100 B); once its file is written and
    verified, the node serves chunks from a read-only map of the file instead. The map outlives
    the file's removal (a newer snapshot replaced it while a peer still pulls it), and the pages
    a read touched are released at once, so serving a peer does not grow the node.
    """

    def __init__(self, mapped: MappedFile, pieces: list[tuple[int, int, int]], start: int) -> None:
        self._mapped = mapped
        self._pieces = pieces  # (offset in the body, offset in the file, length), in order
        self._starts = [p[0] for p in pieces]
        self._start = start  # where the application's bytes begin in the body
        self._length = (pieces[-1][0] + pieces[-1][2] if pieces else 0) - start

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, piece: slice, /) -> bytes:
        start, stop, step = piece.indices(self._length)
        if step != 1:
            raise ValueError("stored snapshot bytes are read in runs")
        lo, hi = self._start + start, self._start + stop
        out = []
        i = bisect_right(self._starts, lo) - 1
        first = last = -1
        while lo < hi:
            body_at, file_at, length = self._pieces[i]
            at = file_at + lo - body_at
            take = min(hi, body_at + length) - lo
            out.append(self._mapped[at : at + take])
            first, last = (at if first < 0 else first), at + take
            lo += take
            i += 1
        self._mapped.release(first, last)
        return b"".join(out)


def _bin_header(length: int) -> bytes:
    """msgpack's header of a bin of ``length`` bytes (how ``encode_snapshot`` ends the body)."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def open_stored(fs: FileSystem, identity: Identity, slot: int, length: int) -> StoredBytes:
    """The last ``length`` bytes of ``slot``'s snapshot body, its application's bytes (the
    body is ``[slot, configs, app]``), read from the file; the file was verified whole when it
    was written or recovered, so only the records' headers are read here."""
    where = snapshot_name(slot)
    mapped = fs.map(where)
    header = FileHeader.decode(mapped[:FILE_HEADER], where)
    check_identity(header, identity, where)
    if header.kind != KIND_SNAP or header.first != slot:
        raise CorruptionError(f"{where}: header says kind {header.kind}, slot {header.first}")
    pieces = []
    body_at = 0
    offset = FILE_HEADER
    while True:
        rec = peek(mapped[offset : offset + RECORD_HEADER])
        if rec is None:
            raise CorruptionError(f"{where}: no record at offset {offset}")
        rtype, size = rec
        if rtype == _REC_END:
            break
        pieces.append((body_at, offset + RECORD_HEADER, size))
        body_at += size
        offset += RECORD_HEADER + size
    mapped.release(0, offset)
    start = body_at - length
    tag = _bin_header(length)
    if start < len(tag) or StoredBytes(mapped, pieces, start - len(tag))[: len(tag)] != tag:
        raise CorruptionError(f"{where}: does not end with {length} bytes of the application")
    return StoredBytes(mapped, pieces, start)
