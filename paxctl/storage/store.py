"""A node's durable storage: recovery at start, then one ``persist`` per Ready.

Layout of a data directory::

    meta                       identity, promise, highest round, compaction point (atomic)
    wal/<first-record>.wal     the log segments
    snap/<slot>.snap           the last few snapshots

Failure policy (Paxos Made Live; Rebello et al., ATC '20): a failed write or fsync raises
``StorageError`` and the caller must stop the node, never retry, because after a failed fsync
the page cache may already have dropped the data it claimed to hold. Corruption found at start
raises ``CorruptionError`` naming the file and offset; a torn tail is the one thing repaired.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from paxctl.core.state import DurableState, Ready
from paxctl.core.types import AcceptedEntry, Snapshot
from paxctl.storage.framing import FILE_HEADER, CorruptionError
from paxctl.storage.fs import FileSystem
from paxctl.storage.meta import META, Identity, Meta, read_meta, write_meta
from paxctl.storage.snapshots import (
    SNAP_DIR,
    StoredBytes,
    open_stored,
    read_snapshot,
    snapshot_name,
    snapshot_slots,
    write_snapshot,
)
from paxctl.storage.wal import WAL_DIR, Wal, segment_name

if TYPE_CHECKING:
    from paxctl.core.node import Node

#: Test-only switch: skip the log's fsync, so the simulator can show it catches the data loss.
PLANTED_STORAGE_BUGS = frozenset({"skip_fsync"})


class StorageError(Exception):
    """A write or fsync failed. Fatal: log it and stop the node; never retry."""


class EmptyDataDirError(CorruptionError):
    """The data directory is empty, but this node was told neither to bootstrap a new cluster
    nor to join one."""


def empty_dir_advice(label: str, node_id: int) -> str:
    """What to tell an operator whose node found its data directory empty."""
    return (
        f"{label}: the data directory is empty. Only the founding members of a new cluster "
        "(paxctl cluster up does this for you) and nodes joining one (--join) start empty. If "
        f"node {node_id} lost its disk it must not vote under its old id: it rejoins under a NEW "
        f"id with `paxctl cluster replace {node_id} NEW -s SERVERS` (then start NEW with "
        f"--join), or `paxctl cluster replace {node_id}` on a cluster made by `paxctl cluster "
        "up`, which starts the replacement itself."
    )


@dataclass
class StorageStats:
    records: int = 0
    log_fsyncs: int = 0
    meta_writes: int = 0
    snapshots: int = 0


@dataclass
class Recovered:
    state: DurableState
    warnings: list[str] = field(default_factory=list)


class Storage:
    def __init__(
        self,
        fs: FileSystem,
        identity: Identity,
        label: str,
        segment_bytes: int,
        keep_snapshots: int,
        planted_bugs: frozenset[str],
    ) -> None:
        unknown = planted_bugs - PLANTED_STORAGE_BUGS
        if unknown:
            raise ValueError(f"unknown planted storage bugs: {sorted(unknown)}")
        if segment_bytes <= FILE_HEADER:
            raise ValueError(f"segment_bytes must exceed the {FILE_HEADER}-byte segment header")
        self.fs = fs
        self.identity = identity
        self.label = label
        self.keep_snapshots = max(1, keep_snapshots)
        self.wal = Wal(fs, identity, segment_bytes, label)
        self.meta = Meta()
        self.stats = StorageStats()
        self._sync = "skip_fsync" not in planted_bugs
        self._failed: str | None = None  # set by the first failed write: no write after it
        self._snapshot_slot = 0  # the newest valid snapshot held (not merely the newest file)
        self._kept_in_memory = -1  # a snapshot whose file could not serve peers (``hand_over``)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        identity: Identity,
        *,
        bootstrap: bool,
        join_disk: int = 0,
        label: str = "data",
        segment_bytes: int = 64 * 1024 * 1024,
        keep_snapshots: int = 3,
        planted_bugs: frozenset[str] = frozenset(),
    ) -> tuple[Storage, Recovered]:
        """Recover the node's durable state, or create it when bootstrapping a new cluster.

        ``bootstrap`` says this node is a founding member of a new cluster, so an empty
        directory is expected; ``join_disk`` (nonzero: the shell's random number) that it joins
        one, and names the new directory with it (``disk``). Otherwise an empty directory is
        refused: a voter that lost its disk would vote again having forgotten its promises.
        """
        if bootstrap and join_disk:
            raise ValueError("a node either founds a cluster or joins one")
        if not 0 <= join_disk < 2**63:
            raise ValueError("a disk id is a 63-bit number")
        store = cls(fs, identity, label, segment_bytes, keep_snapshots, planted_bugs)
        try:
            if not fs.exists(META):
                return store, store._create(bootstrap, join_disk)
            return store, store._recover()
        except OSError as exc:
            raise StorageError(f"{label}: cannot read the data directory: {exc}") from exc

    @property
    def disk(self) -> int:
        """This data directory's disk id (0: bootstrapped; see ``Meta.disk``)."""
        return self.meta.disk

    def _create(self, bootstrap: bool, join_disk: int) -> Recovered:
        leftovers = self._leftovers()
        if leftovers:
            raise CorruptionError(
                f"{self.label}/{META}: metadata is missing but {leftovers[0]} exists; the "
                "node's promises cannot be known, so it must not vote. Move the directory aside "
                "and rejoin under a new node id."
            )
        if not bootstrap and not join_disk:
            raise EmptyDataDirError(empty_dir_advice(self.label, self.identity.node_id))
        self.meta = Meta(disk=join_disk)
        self.fs.makedirs(WAL_DIR)
        self.fs.makedirs(SNAP_DIR)
        for name in self.fs.listdir(WAL_DIR):  # header-only segments of an interrupted start
            self.fs.remove(f"{WAL_DIR}/{name}")
        self.wal.create_segment(1)
        write_meta(self.fs, self.identity, self.meta)
        return Recovered(DurableState())

    def _leftovers(self) -> list[str]:
        """Files that a bootstrap interrupted before its metadata cannot explain."""
        found = []
        if self.fs.exists(WAL_DIR):
            for name in self.fs.listdir(WAL_DIR):
                if self.fs.size(f"{WAL_DIR}/{name}") > FILE_HEADER:
                    found.append(f"{WAL_DIR}/{name}")
        if self.fs.exists(SNAP_DIR):
            found += [f"{SNAP_DIR}/{n}" for n in self.fs.listdir(SNAP_DIR)]
        return found

    def _recover(self) -> Recovered:
        warnings: list[str] = []
        self._sync_everything()
        self.meta = read_meta(self.fs, self.identity, f"{self.label}/{META}")
        snapshot = self._newest_valid_snapshot(warnings)
        self._snapshot_slot = snapshot.slot if snapshot else 0
        state = DurableState(
            promised=self.meta.promised,
            max_round=self.meta.max_round,
            snapshot=snapshot,
            compacted=self.meta.compacted,
        )
        base = snapshot.slot if snapshot else 0
        for entry in self.wal.recover(self.meta.wal_start, self.meta.wal_last, warnings):
            if isinstance(entry, AcceptedEntry):
                if entry.slot > self.meta.compacted:
                    state.votes[entry.slot] = entry
            elif entry.slot > base:
                state.chosen[entry.slot] = entry.value
        newest = self.wal.segments[-1].first
        if newest != self.meta.wal_last:  # a crash came between a roll and its metadata
            self._write_meta(replace(self.meta, wal_last=newest))
        return Recovered(state, warnings)

    def _sync_everything(self) -> None:
        """Make whatever a dead process left written-but-unsynced durable before trusting it.

        Otherwise the node could act on (and acknowledge) state that a later power loss takes
        back: a promise read from the page cache is not a promise on disk.
        """
        for directory in (WAL_DIR, SNAP_DIR):
            if self.fs.exists(directory):
                for name in self.fs.listdir(directory):
                    self._sync_file(f"{directory}/{name}")
                self.fs.sync_dir(directory)
        self._sync_file(META)
        self.fs.sync_dir("")

    def _sync_file(self, path: str) -> None:
        handle = self.fs.append(path)
        try:
            handle.sync()
        finally:
            handle.close()

    def _newest_valid_snapshot(self, warnings: list[str]) -> Snapshot | None:
        for name in self.fs.listdir(SNAP_DIR):
            if name.endswith(".tmp"):  # a snapshot whose write a crash interrupted
                self.fs.remove(f"{SNAP_DIR}/{name}")
                warnings.append(f"{self.label}/{SNAP_DIR}/{name}: removed an unfinished snapshot")
        for slot in reversed(snapshot_slots(self.fs)):
            try:
                return read_snapshot(self.fs, self.identity, slot, self.label)
            except CorruptionError as exc:
                warnings.append(f"{exc} (skipped; falling back to an older snapshot)")
        return None

    # ------------------------------------------------------------------ writing

    def persist(self, ready: Ready) -> None:
        """Make a Ready's state durable before its messages leave: one log fsync per batch."""
        self._check_usable()
        try:
            if ready.snapshot is not None:
                self.save_snapshot(ready.snapshot)
            if (ready.votes or ready.chosen) and self.wal.full:
                self.wal.create_segment(self.wal.segments[-1].end)
                self._write_meta(replace(self.meta, wal_last=self.wal.segments[-1].first))
            # Votes must be durable before the replies that announce them. Chosen values need
            # not be: a node that loses them learns them again, so a batch of only those is
            # written without an fsync (the next vote's fsync covers it); except when the
            # commit index passes a configuration's first slot (``Ready.sync_chosen``).
            sync = self._sync and (bool(ready.votes) or ready.sync_chosen)
            n = self.wal.append(ready.votes, ready.chosen, sync=sync)
            self.stats.records += n
            self.stats.log_fsyncs += sync
            hs = ready.hard_state
            if hs is not None:
                self._write_meta(replace(self.meta, promised=hs.promised, max_round=hs.max_round))
        except OSError as exc:
            raise self._fail(f"write failed, stopping the node: {exc}") from exc

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageError(f"{self.label}: storage failed earlier ({self._failed}); restart")

    def _fail(self, what: str) -> StorageError:
        """Latch the failure: after a failed write or fsync nothing more may be written."""
        self._failed = what
        return StorageError(f"{self.label}: {what}")

    def _write_meta(self, meta: Meta) -> None:
        write_meta(self.fs, self.identity, meta, sync=self._sync)
        self.meta = meta
        self.stats.meta_writes += 1

    def save_snapshot(self, snap: Snapshot) -> None:
        """Store a verified snapshot, then drop the log segments and old snapshots it covers."""
        self._check_usable()
        try:
            if snap.slot <= self._snapshot_slot:
                return
            write_snapshot(self.fs, self.identity, snap, self.label)
            self._snapshot_slot = snap.slot
            self.stats.snapshots += 1
            compacted = max(self.meta.compacted, snap.slot)
            doomed = self.wal.deletable_prefix(snap.slot)
            keep_from = self.wal.segments[len(doomed)].first
            # The metadata moves first: a crash between the two leaves extra segments, which
            # recovery skips over, never a metadata that points at a deleted one.
            self._write_meta(replace(self.meta, compacted=compacted, wal_start=keep_from))
            self.wal.delete(doomed)
            for old in snapshot_slots(self.fs)[: -self.keep_snapshots]:
                self.fs.remove(snapshot_name(old))
            self.fs.sync_dir(SNAP_DIR)
        except OSError as exc:
            raise self._fail(f"snapshot write failed, stopping the node: {exc}") from exc

    def hand_over(self, node: Node) -> None:
        """Once the snapshot ``node`` holds for peers (taken, installed or recovered) is stored
        here, have it served from its file and let its bytes go: they cost as much memory as
        the whole state. Cheap when there is nothing to do; call it after every save."""
        held = node.learner.snapshot
        if held is None or held.stored is not None or held.slot == self._kept_in_memory:
            return
        stored = self.stored_bytes(held.slot, len(held.app))
        if stored is None or not node.snapshot_stored(held.slot, stored):
            self._kept_in_memory = held.slot  # its file cannot serve it: not asked again

    def stored_bytes(self, slot: int, length: int) -> StoredBytes | None:
        """The application's bytes (``length`` of them) of ``slot``'s snapshot, read from its
        file, if it is the newest one stored; None if it is not or cannot be read (its bytes
        then stay in memory)."""
        if slot != self._snapshot_slot or self._failed is not None:
            return None
        try:
            return open_stored(self.fs, self.identity, slot, length)
        except (OSError, ValueError, CorruptionError):
            return None

    def close(self) -> None:
        self.wal.close()


__all__ = [
    "CorruptionError",
    "EmptyDataDirError",
    "Identity",
    "Recovered",
    "Storage",
    "StorageError",
    "empty_dir_advice",
    "segment_name",
]
