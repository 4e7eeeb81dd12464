"""The write-ahead log: segmented, append-only, one fsync per batch.

Everything one ``Ready`` asks to persist is framed, written with one ``write`` and made durable
with one ``fsync`` (group commit: every proposal that arrived in one turn of the driver loop
shares it). Segments are named by the index of their first record, so a missing one shows as a
gap. A segment is rolled when it grows past its size limit; only whole segments are deleted, and
only a prefix of them, once a snapshot covers every slot they mention.

Recovery reads the segments in order. A bad record at the very end of the newest segment, with
nothing valid after it, is a torn write (the crash came before its fsync, so it was never
acknowledged): it is cut off. Anything else that fails a check is corruption, reported with file
and offset, and the node refuses to start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from paxctl.core.codec import CodecError, decode_value, encode_value
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry
from paxctl.storage.framing import (
    FILE_HEADER,
    CorruptionError,
    FileHeader,
    Record,
    find_valid_after,
    frame,
    parse_at,
)
from paxctl.storage.fs import FileHandle, FileSystem
from paxctl.storage.meta import Identity, check_identity

WAL_DIR = "wal"
KIND_WAL = 2
REC_VOTE = 1
REC_CHOSEN = 2

RECOVERY_HINT = (
    "This node's log cannot be trusted, so it must not vote. Keep the directory for diagnosis, "
    "move it aside, and bring the node back as a new member (a fresh id) through a membership "
    "change; until membership changes exist, rebuild the cluster from a backup."
)


def segment_name(first: int) -> str:
    return f"{WAL_DIR}/{first:020d}.wal"


@dataclass
class Segment:
    first: int  # index of its first record
    count: int = 0  # records in it
    max_slot: int = 0  # highest slot any of its records mentions

    @property
    def name(self) -> str:
        return segment_name(self.first)

    @property
    def end(self) -> int:
        return self.first + self.count


def encode_vote(vote: AcceptedEntry) -> tuple[int, bytes]:
    payload = [vote.slot, vote.ballot.round, vote.ballot.node, encode_value(vote.value)]
    return REC_VOTE, msgpack.packb(payload, use_bin_type=True)


def encode_chosen(entry: ChosenEntry) -> tuple[int, bytes]:
    payload = [entry.slot, encode_value(entry.value)]
    return REC_CHOSEN, msgpack.packb(payload, use_bin_type=True)


def decode_record(rec: Record) -> AcceptedEntry | ChosenEntry:
    """A record's entry; raises ValueError if its (checksummed) payload makes no sense."""
    try:
        fields = msgpack.unpackb(rec.payload, raw=False)
        if rec.rtype == REC_VOTE:
            slot, r, n, value = fields
            return AcceptedEntry(int(slot), Ballot(int(r), int(n)), decode_value(value))
        if rec.rtype == REC_CHOSEN:
            slot, value = fields
            return ChosenEntry(int(slot), decode_value(value))
    except (ValueError, TypeError, CodecError) as exc:
        raise ValueError(f"undecodable record: {exc}") from None
    raise ValueError(f"unknown record type {rec.rtype}")


class Wal:
    """An open log: the segments found at recovery, and the newest one open for appending."""

    def __init__(self, fs: FileSystem, identity: Identity, segment_bytes: int, label: str) -> None:
        self.fs = fs
        self.identity = identity
        self.segment_bytes = segment_bytes
        self.label = label
        self.segments: list[Segment] = []
        self._handle: FileHandle | None = None
        self._size = 0
        self._unsynced = False  # bytes written to the newest segment since its last fsync

    # ------------------------------------------------------------------ writing

    def create_segment(self, first: int) -> None:
        """Start a new, durable, empty segment (its name durable in the directory too)."""
        if self._handle is not None:
            if self._unsynced:  # only the newest segment may ever hold a torn tail
                self._handle.sync()
            self._handle.close()
        seg = Segment(first)
        header = FileHeader(KIND_WAL, self.identity.cluster_id, self.identity.node_id, first)
        handle = self.fs.create(seg.name)
        handle.write(header.encode())
        handle.sync()
        self.fs.sync_dir(WAL_DIR)
        self.segments.append(seg)
        self._handle = handle
        self._size = FILE_HEADER
        self._unsynced = False

    def append(
        self, votes: tuple[AcceptedEntry, ...], chosen: tuple[ChosenEntry, ...], sync: bool = True
    ) -> int:
        """Write one batch with one write and one fsync; returns the number of records."""
        payloads = [encode_vote(v) for v in votes] + [encode_chosen(c) for c in chosen]
        if not payloads:
            if sync and self._unsynced and self._handle is not None:
                self._handle.sync()  # what earlier batches wrote must be durable now
                self._unsynced = False
            return 0
        if self._handle is None:
            raise RuntimeError("the log has no open segment")
        records = []
        offset = self._size
        for rtype, payload in payloads:
            records.append(frame(rtype, payload, at=offset))
            offset += len(records[-1])
        data = b"".join(records)
        self._handle.write(data)
        if sync:
            self._handle.sync()
        self._unsynced = not sync
        seg = self.segments[-1]
        seg.count += len(records)
        top = max(max((v.slot for v in votes), default=0), max((c.slot for c in chosen), default=0))
        seg.max_slot = max(seg.max_slot, top)
        self._size += len(data)
        return len(records)

    @property
    def full(self) -> bool:
        """The newest segment reached its size limit: the next batch goes to a new one."""
        return self._size >= self.segment_bytes and self.segments[-1].count > 0

    def deletable_prefix(self, compacted: int) -> list[Segment]:
        """The oldest segments whose every slot is covered by a snapshot (never the newest)."""
        out = []
        for seg in self.segments[:-1]:
            if seg.max_slot > compacted:
                break
            out.append(seg)
        return out

    def delete(self, segments: list[Segment]) -> None:
        for seg in segments:
            self.fs.remove(seg.name)
            self.segments.remove(seg)
        if segments:
            self.fs.sync_dir(WAL_DIR)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # ------------------------------------------------------------------ recovery

    def recover(
        self, wal_start: int, wal_last: int, warnings: list[str]
    ) -> Iterator[AcceptedEntry | ChosenEntry]:
        """Replay every record in order, cutting a torn tail; raise CorruptionError otherwise.

        ``wal_start`` and ``wal_last`` (from the metadata) name the oldest segment kept and the
        newest one known, so a missing first or last segment is caught, not just a gap.
        """
        names = [n for n in self.fs.listdir(WAL_DIR) if n.endswith(".wal")]
        for name in [n for n in names if n.split(".")[0].isdigit() and int(n[:-4]) < wal_start]:
            # A compaction moved the metadata past this segment, then crashed before removing it.
            self.fs.remove(f"{WAL_DIR}/{name}")
            names.remove(name)
            warnings.append(f"{self.label}/{WAL_DIR}/{name}: removed, compacted away already")
        if segment_name(wal_last).split("/")[1] not in names:
            raise CorruptionError(
                f"{self.label}/{segment_name(wal_last)}: the newest log segment is missing. "
                f"{RECOVERY_HINT}"
            )
        expected = wal_start
        for i, name in enumerate(names):
            path = f"{WAL_DIR}/{name}"
            where = f"{self.label}/{path}"
            last = i == len(names) - 1
            data = self.fs.read(path)
            if last and len(data) < FILE_HEADER:
                # A segment created by a crash mid-roll: its header was never synced.
                warnings.append(f"{where}: removed a segment torn while being created")
                self.fs.remove(path)
                self.fs.sync_dir(WAL_DIR)
                break
            header = FileHeader.decode(data, where)
            check_identity(header, self.identity, where)
            if header.kind != KIND_WAL:
                raise CorruptionError(f"{where}: not a log segment (kind {header.kind})")
            if header.first != expected:
                raise CorruptionError(
                    f"{where}: log segment starts at record {header.first}, expected "
                    f"{expected}: a segment is missing. {RECOVERY_HINT}"
                )
            seg = Segment(header.first)
            offset = FILE_HEADER
            while offset < len(data):
                rec = parse_at(data, offset)
                if rec is None:
                    later = find_valid_after(data, offset)
                    if not last or later is not None:
                        tail = f", and valid records follow at offset {later}" if later else ""
                        raise CorruptionError(
                            f"{where}: bad record at offset {offset} (checksum or framing)"
                            f"{tail}. {RECOVERY_HINT}"
                        )
                    warnings.append(
                        f"{where}: cut a torn tail of {len(data) - offset} bytes at offset "
                        f"{offset} (a write the crash interrupted, never acknowledged)"
                    )
                    self.fs.truncate(path, offset)
                    break
                try:
                    entry = decode_record(rec)
                except ValueError as exc:
                    msg = f"{where}: offset {offset}: {exc}. {RECOVERY_HINT}"
                    raise CorruptionError(msg) from None
                seg.count += 1
                seg.max_slot = max(seg.max_slot, entry.slot)
                yield entry
                offset = rec.end
            self.segments.append(seg)
            expected = seg.end
            if last:
                self._handle = self.fs.append(path)
                self._size = min(offset, len(data))
        if not self.segments or self._handle is None:
            self.create_segment(expected)
