"""A snapshot served to peers from its file (``Storage.stored_bytes``): the very bytes taken,
read in any runs across the file's records, on the real disk and the simulated one, after a
restart, and after the file was removed while still held."""

from __future__ import annotations

import random

import pytest
from storage_helpers import VOTERS, open_storage

from paxctl.core.types import Snapshot
from paxctl.storage.fs import FileSystem, OsFileSystem
from paxctl.storage.snapshots import CHUNK, snapshot_name
from paxctl.testing.simfs import SimFileSystem

#: Over two records of the file (a record holds CHUNK bytes of the body).
APP = random.Random(7).randbytes(2 * CHUNK + 12345)


def make_fs(kind: str, tmp_path) -> FileSystem:
    return SimFileSystem() if kind == "sim" else OsFileSystem(str(tmp_path))


def runs(size: int) -> list[tuple[int, int]]:
    rng = random.Random(size)
    edges = [0, 1, CHUNK - 30, CHUNK, CHUNK + 1, 2 * CHUNK - 5, size - 1, size]
    found = [(a, b) for a in edges for b in edges if a <= b]
    found += [(a, a + rng.randrange(1, 3 * CHUNK)) for a in rng.sample(range(size), 20)]
    return found


@pytest.mark.parametrize("kind", ["sim", "os"])
def test_stored_bytes_are_the_snapshot_taken_in_any_run(kind, tmp_path):
    storage, _ = open_storage(make_fs(kind, tmp_path), bootstrap=True)
    storage.save_snapshot(Snapshot(5, VOTERS, APP))
    stored = storage.stored_bytes(5, len(APP))
    assert stored is not None and len(stored) == len(APP)
    for a, b in runs(len(APP)):
        assert stored[a:b] == APP[a:b], (a, b)
    assert stored[:] == APP


@pytest.mark.parametrize("kind", ["sim", "os"])
def test_only_the_newest_snapshot_of_its_true_size_is_served_from_disk(kind, tmp_path):
    storage, _ = open_storage(make_fs(kind, tmp_path), bootstrap=True)
    storage.save_snapshot(Snapshot(5, VOTERS, b"small"))
    storage.save_snapshot(Snapshot(9, VOTERS, APP))
    assert storage.stored_bytes(5, 5) is None  # not the newest
    assert storage.stored_bytes(9, len(APP) + 1) is None  # not its size
    assert storage.stored_bytes(9, len(APP) - 1) is None
    assert storage.stored_bytes(9, 5) is None  # the body does not end in a bin of 5 bytes
    assert storage.stored_bytes(9, len(APP)) is not None


@pytest.mark.parametrize("kind", ["sim", "os"])
def test_a_recovered_snapshot_is_served_from_disk_too(kind, tmp_path):
    fs = make_fs(kind, tmp_path)
    storage, _ = open_storage(fs, bootstrap=True)
    storage.save_snapshot(Snapshot(5, VOTERS, APP))
    storage.close()
    storage, recovered = open_storage(fs)
    assert recovered.state.snapshot is not None and recovered.state.snapshot.app == APP
    stored = storage.stored_bytes(5, len(APP))
    assert stored is not None and stored[:] == APP


def test_a_mapped_snapshot_reads_on_after_its_file_is_removed(tmp_path):
    fs = OsFileSystem(str(tmp_path))
    storage, _ = open_storage(fs, bootstrap=True, keep_snapshots=1)
    storage.save_snapshot(Snapshot(5, VOTERS, APP))
    stored = storage.stored_bytes(5, len(APP))
    assert stored is not None
    storage.save_snapshot(Snapshot(9, VOTERS, b"newer"))
    assert not fs.exists(snapshot_name(5))
    assert stored[CHUNK - 10 : CHUNK + 10] == APP[CHUNK - 10 : CHUNK + 10]
    assert stored[:] == APP


class Holder:
    """What ``hand_over`` uses of a core Node: the snapshot held, and the call that swaps it."""

    def __init__(self, held: Snapshot | None) -> None:
        self.learner = self
        self.snapshot = held
        self.calls: list[int] = []

    def snapshot_stored(self, slot: int, stored: object) -> bool:
        self.calls.append(slot)
        assert self.snapshot is not None
        self.snapshot = Snapshot(slot, self.snapshot.configs, b"", stored)  # type: ignore[arg-type]
        return True


def test_hand_over_swaps_a_saved_snapshot_once_and_leaves_an_unsaved_one_alone():
    storage, _ = open_storage(SimFileSystem(), bootstrap=True)
    storage.hand_over(Holder(None))  # type: ignore[arg-type]  # nothing held: nothing to do
    unsaved = Holder(Snapshot(3, VOTERS, b"not on disk"))
    for _ in range(2):
        storage.hand_over(unsaved)  # type: ignore[arg-type]
    assert unsaved.calls == [] and unsaved.snapshot is not None and unsaved.snapshot.app
    storage.save_snapshot(Snapshot(5, VOTERS, APP))
    node = Holder(Snapshot(5, VOTERS, APP))
    storage.hand_over(node)  # type: ignore[arg-type]
    storage.hand_over(node)  # type: ignore[arg-type]  # stored already
    assert node.calls == [5]
    assert node.snapshot is not None and node.snapshot.body[:] == APP
