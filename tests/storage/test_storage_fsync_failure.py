"""A failed write or fsync is fatal: ``StorageError``, no retry, and nothing acknowledged lost.

After a failed fsync the kernel may already have dropped the dirty pages it could not write, so
a second fsync that succeeds proves nothing about them (PostgreSQL's "fsyncgate"). The storage
layer must raise, must not call fsync again, and must not let a later call carry on as if the
failed batch were on disk.
"""

from __future__ import annotations

import errno

import pytest
from storage_helpers import (
    Expect,
    Persist,
    chosen,
    hs,
    lost,
    open_storage,
    snap,
    vote,
)

from paxctl.core.state import Ready
from paxctl.core.types import Ballot
from paxctl.storage.store import StorageError
from paxctl.storage.wal import segment_name
from paxctl.testing.simfs import SimFileSystem

B = Ballot(2, 1)


class FailingDisk(SimFileSystem):
    """A simulated disk whose fsyncs (of files, or of directories) fail on demand.

    ``fail`` is a predicate on ``(kind, path)``; every sync attempt is counted, failed or not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail = lambda kind, path: False
        self.attempts: list[tuple[str, str]] = []
        self.hook = self._maybe_fail

    def _maybe_fail(self, kind: str, path: str) -> None:
        if kind in ("sync", "sync_dir"):
            self.attempts.append((kind, path))
            if self.fail(kind, path):
                raise OSError(errno.EIO, f"simulated EIO on {kind} {path}")
        if kind == "write" and self.fail(kind, path):
            raise OSError(errno.ENOSPC, f"simulated ENOSPC on {path}")


def started(**opts: object):
    fs = FailingDisk()
    storage, _ = open_storage(fs, bootstrap=True, **opts)
    acked = Expect()
    for step in [
        Persist(Ready(hard_state=hs(B))),
        Persist(Ready(votes=(vote(1, B), vote(2, B)), chosen=(chosen(vote(1, B)),))),
    ]:
        storage.persist(step.ready)
        acked.add(step)
    return fs, storage, acked


def log_sync(kind: str, path: str) -> bool:
    return kind == "sync" and path.startswith("wal/")


def meta_sync(kind: str, path: str) -> bool:
    return kind == "sync" and path == "meta.tmp"


def root_dir_sync(kind: str, path: str) -> bool:
    return kind == "sync_dir" and path == ""


def log_write(kind: str, path: str) -> bool:
    return kind == "write" and path.startswith("wal/")


#: What fails, and a Ready whose persist needs it.
CASES = {
    "log fsync": (log_sync, Ready(votes=(vote(3, B),))),
    "metadata fsync": (meta_sync, Ready(hard_state=hs(Ballot(3, 1)))),
    "metadata directory fsync": (root_dir_sync, Ready(hard_state=hs(Ballot(3, 1)))),
    "log write": (log_write, Ready(votes=(vote(3, B),))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failed_sync_makes_persist_raise_storage_error_once_without_retry(case):
    fail, ready = CASES[case]
    fs, storage, acked = started()
    fs.attempts.clear()
    fs.fail = fail
    with pytest.raises(StorageError, match=r"^data: write failed, stopping the node: .*simulated"):
        storage.persist(ready)
    failing = [a for a in fs.attempts if fail(*a)]
    assert len(failing) <= 1, f"the failed sync was retried: {fs.attempts}"
    if case != "log write":
        assert len(failing) == 1
        assert fs.attempts[-1] == failing[0], "nothing may be synced after a failed sync"
    # What was acknowledged before the failure is on disk.
    fs.crash()
    _, rec = open_storage(fs)
    assert not lost(acked, rec.state)


def test_a_failed_fsync_while_rolling_a_segment_is_fatal():
    fs, storage, acked = started(segment_bytes=150)
    fs.attempts.clear()
    first = segment_name(1)
    fs.fail = lambda k, p: k == "sync" and p.startswith("wal/") and p != first  # a new one's
    with pytest.raises(StorageError):
        for s in range(3, 10):
            storage.persist(Ready(votes=(vote(s, B),)))
            acked.add(Persist(Ready(votes=(vote(s, B),))))
    failed = [a for a in fs.attempts if fs.fail(*a)]
    assert len(failed) == 1 and fs.attempts[-1] == failed[0]
    assert len(storage.wal.segments) == 1, "the roll failed: no segment was added"
    fs.crash()
    _, rec = open_storage(fs, segment_bytes=150)
    assert not lost(acked, rec.state)


def test_a_failed_fsync_of_a_snapshot_is_fatal():
    fs, storage, acked = started()
    fs.attempts.clear()
    fs.fail = lambda k, p: k == "sync" and p.startswith("snap/")
    with pytest.raises(
        StorageError, match=r"^data: snapshot write failed, stopping the node: .*simulated EIO"
    ):
        storage.save_snapshot(snap(1))
    assert fs.attempts == [("sync", "snap/00000000000000000001.tmp")]
    fs.crash()
    _, rec = open_storage(fs)
    assert rec.state.snapshot is None and rec.state.compacted == 0
    assert not lost(acked, rec.state)


def test_a_failed_fsync_of_a_peer_snapshot_in_persist_is_fatal():
    fs, storage, _ = started()
    fs.attempts.clear()
    fs.fail = lambda k, p: k == "sync_dir" and p == "snap"
    with pytest.raises(StorageError):
        storage.persist(Ready(snapshot=snap(2), votes=(vote(3, B),)))
    assert [a for a in fs.attempts if a[1] == "snap"] == [("sync_dir", "snap")]
    assert not any(p.startswith("wal/") for _, p in fs.attempts), "no log write after it"


def test_sync_counts_on_the_happy_path():
    """For reference: one log fsync per batch with votes, none for a chosen-only batch."""
    fs, storage, _ = started()
    fs.attempts.clear()
    storage.persist(Ready(votes=(vote(3, B), vote(4, B)), chosen=(chosen(vote(2, B)),)))
    assert fs.attempts == [("sync", "wal/00000000000000000001.wal")]
    fs.attempts.clear()
    storage.persist(Ready(chosen=(chosen(vote(3, B)),)))
    assert fs.attempts == []


@pytest.mark.parametrize("then", ["persist votes", "persist promise", "save snapshot"])
def test_after_a_failed_fsync_the_storage_refuses_further_writes(then):
    """Fatal means fatal: once an fsync failed, a later call must raise too, without touching
    the disk. Otherwise a caller that carries on retries the fsync on the same file (and a
    success then "acknowledges" a batch whose pages the kernel already dropped), and the log's
    own bookkeeping no longer matches the file: the failed batch's records are in it but not
    counted, so the next segment is named for the wrong record and a later start refuses the
    directory as corrupt even though no byte was damaged.
    """
    fs, storage, _ = started(segment_bytes=200)
    fail_once = [True]

    def fail(kind: str, path: str) -> bool:
        hit = kind == "sync" and path.startswith("wal/") and fail_once[0]
        fail_once[0] = fail_once[0] and not hit
        return hit

    fs.fail = fail
    with pytest.raises(StorageError):
        storage.persist(Ready(votes=(vote(3, B),)))
    fs.attempts.clear()
    ops = fs.ops
    nxt = {
        "persist votes": lambda: storage.persist(Ready(votes=(vote(4, B),))),
        "persist promise": lambda: storage.persist(Ready(hard_state=hs(Ballot(5, 1)))),
        "save snapshot": lambda: storage.save_snapshot(snap(2)),
    }[then]
    with pytest.raises(StorageError):
        nxt()
    assert fs.attempts == [] and fs.ops == ops, "a failed storage must not write or sync again"


def test_carrying_on_after_a_failed_fsync_breaks_the_log():
    """What the refusal above prevents, shown end to end: no crash, no damaged byte, and yet
    the directory no longer opens after a caller ignored one StorageError."""
    fs, storage, _ = started(segment_bytes=200)
    fail_once = [True]

    def fail(kind: str, path: str) -> bool:
        hit = kind == "sync" and path.startswith("wal/") and fail_once[0]
        fail_once[0] = fail_once[0] and not hit
        return hit

    fs.fail = fail
    with pytest.raises(StorageError):
        storage.persist(Ready(votes=(vote(3, B),)))
    for s in range(4, 10):
        try:
            storage.persist(Ready(votes=(vote(s, B),)))
        except StorageError:
            break  # the storage refused: good, the caller has to stop
    storage.close()
    open_storage(fs, segment_bytes=200)  # must not raise CorruptionError


def test_a_failed_fsync_in_save_snapshot_keeps_the_snapshot_unacknowledged():
    fs, storage, acked = started()
    fs.fail = lambda k, p: k == "sync_dir" and p == "snap"
    with pytest.raises(StorageError):
        storage.save_snapshot(snap(2))
    fs.crash()
    _, rec = open_storage(fs)
    assert not lost(acked, rec.state)
