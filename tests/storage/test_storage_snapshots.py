"""Snapshots: how many are kept, which log segments go, and what recovery builds from them."""

from __future__ import annotations

import pytest
from storage_helpers import (
    IDENT,
    LABEL,
    Expect,
    Persist,
    SaveSnapshot,
    chosen,
    crash_at,
    expected_state,
    hs,
    lost,
    open_storage,
    run_script,
    snap,
    vote,
)

from paxctl.core.membership import founding
from paxctl.core.state import Ready
from paxctl.core.types import Ballot, Snapshot
from paxctl.storage.snapshots import read_snapshot, snapshot_name, write_snapshot
from paxctl.storage.wal import segment_name
from paxctl.testing.simfs import SimFileSystem

CFG3 = (founding({1: "", 2: "", 3: ""}),)

B = Ballot(4, 2)
#: A one-vote record is ~46 bytes and a header 44: every batch starts a new segment.
ONE_BATCH_PER_SEGMENT = 60


def batch(*slots: int, choose: tuple[int, ...] = ()) -> Persist:
    return Persist(
        Ready(
            votes=tuple(vote(s, B) for s in slots), chosen=tuple(chosen(vote(s, B)) for s in choose)
        )
    )


def wal_files(fs: SimFileSystem) -> list[str]:
    return fs.listdir("wal")


def seg(first: int) -> str:
    return segment_name(first).split("/")[1]


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_only_the_last_keep_snapshots_are_kept(keep):
    fs = SimFileSystem()
    storage, _ = open_storage(fs, bootstrap=True, keep_snapshots=keep)
    for s in range(1, 11):
        storage.persist(batch(s, choose=(s,)).ready)
        if s % 2 == 0:
            storage.save_snapshot(snap(s))
    slots = [2, 4, 6, 8, 10][-keep:]
    assert fs.listdir("snap") == [snapshot_name(s).split("/")[1] for s in slots]
    # The files are durable as they stand: a power loss brings no deleted one back.
    fs.crash()
    assert fs.listdir("snap") == [snapshot_name(s).split("/")[1] for s in slots]
    _, rec = open_storage(fs, keep_snapshots=keep)
    assert rec.state.snapshot == snap(10)


def test_compaction_deletes_only_a_prefix_of_wholly_covered_segments():
    script = [
        Persist(Ready(hard_state=hs(B))),
        batch(1, 2),  # segment 1 (records 1-2): slots 1-2, covered by a snapshot at 10
        batch(3, choose=(1, 2)),  # segment 3 (records 3-5): covered
        batch(20, 21),  # segment 6: slots up to 21, NOT covered
        batch(4, 5, choose=(3, 4, 5)),  # segment 8: covered, but after one that is not
        batch(22),  # segment 13: the newest
    ]
    fs = SimFileSystem()
    run = run_script(fs, script, segment_bytes=ONE_BATCH_PER_SEGMENT)
    storage = run.storage
    assert storage is not None
    assert wal_files(fs) == [seg(1), seg(3), seg(6), seg(8), seg(13)]
    storage.save_snapshot(snap(10))
    assert wal_files(fs) == [seg(6), seg(8), seg(13)]
    assert storage.meta.wal_start == 6 and storage.meta.compacted == 10
    fs.crash()  # all of it durable
    assert wal_files(fs) == [seg(6), seg(8), seg(13)]
    _, rec = open_storage(fs, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert rec.warnings == []
    assert rec.state == expected_state([*script, SaveSnapshot(snap(10))])
    assert sorted(rec.state.votes) == [20, 21, 22]


def test_the_newest_segment_is_never_deleted_even_when_covered():
    script = [batch(1), batch(2), batch(3)]
    fs = SimFileSystem()
    storage = run_script(fs, script, segment_bytes=ONE_BATCH_PER_SEGMENT).storage
    assert storage is not None
    storage.save_snapshot(snap(50))
    assert wal_files(fs) == [seg(3)]
    storage.persist(batch(51).ready)  # the log goes on in it (or after it)
    storage.close()
    _, rec = open_storage(fs, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert rec.state.snapshot == snap(50) and sorted(rec.state.votes) == [51]


def test_a_segment_is_kept_while_a_chosen_value_in_it_is_not_covered():
    fs = SimFileSystem()
    script = [batch(1, choose=(30,)), batch(2), batch(3)]
    storage = run_script(fs, script, segment_bytes=ONE_BATCH_PER_SEGMENT).storage
    assert storage is not None
    storage.save_snapshot(snap(10))
    assert wal_files(fs) == [seg(1), seg(3), seg(4)]  # slot 30 in the first: none goes
    storage.save_snapshot(snap(30))
    assert wal_files(fs) == [seg(4)]


def test_recovery_is_the_newest_snapshot_plus_the_log_after_it():
    script: list = [Persist(Ready(hard_state=hs(B, 7)))]
    for s in range(1, 16):
        script.append(batch(s, choose=(s - 1,) if s > 1 else ()))
        if s in (5, 10):
            script.append(SaveSnapshot(snap(s - 1)))
    script.append(batch(16, choose=(15,)))
    fs = SimFileSystem()
    run = run_script(fs, script, segment_bytes=300, keep_snapshots=5)
    assert run.storage is not None
    run.storage.close()
    storage, rec = open_storage(fs, segment_bytes=300, keep_snapshots=5)
    state = rec.state
    assert state.snapshot == snap(9)  # the newest of the two
    assert state.compacted == 9
    assert sorted(state.chosen) == list(range(10, 16))  # the log after it, no more
    assert sorted(state.votes) == list(range(10, 17))
    assert state == expected_state(script)
    # ...and every chosen value before the snapshot is summed up in it, not in the log state.
    assert all(s > state.snapshot.slot for s in state.chosen)
    storage.close()


def test_a_snapshot_not_newer_than_the_newest_stored_is_ignored():
    fs = SimFileSystem()
    storage = run_script(fs, [batch(1, 2, 3, choose=(1, 2, 3))]).storage
    assert storage is not None
    storage.save_snapshot(snap(3))
    ops = fs.ops
    storage.save_snapshot(snap(2))
    storage.save_snapshot(Snapshot(3, CFG3, b"another state at 3"))
    assert fs.ops == ops
    storage.close()
    _, rec = open_storage(fs)
    assert rec.state.snapshot == snap(3)


def test_a_snapshot_from_a_peer_is_stored_with_the_votes_of_its_ready():
    fs = SimFileSystem()
    storage = run_script(fs, [batch(1, 2)]).storage
    assert storage is not None
    storage.persist(Ready(hard_state=hs(B), snapshot=snap(40), votes=(vote(41, B),)))
    fs.crash()
    _, rec = open_storage(fs)
    assert rec.state.snapshot == snap(40) and rec.state.compacted == 40
    assert sorted(rec.state.votes) == [41] and rec.state.promised == B


def test_snapshots_in_many_chunks_read_back_intact():
    fs = SimFileSystem()
    fs.makedirs("snap")
    big = Snapshot(9, CFG3, bytes(range(256)) * 9)
    write_snapshot(fs, IDENT, big, LABEL, chunk=100)
    assert read_snapshot(fs, IDENT, 9, LABEL) == big
    assert fs.size(snapshot_name(9)) > 100 * 20


def test_a_crash_between_compaction_and_deletion_leaves_segments_recovery_removes():
    script = [batch(1), batch(2), batch(3), batch(4), SaveSnapshot(snap(3))]
    fs = SimFileSystem()
    seen: list[tuple[int, str, str]] = []
    spy = SimFileSystem()
    spy.hook = lambda k, p: seen.append((spy.ops, k, p))
    run_script(spy, script, segment_bytes=ONE_BATCH_PER_SEGMENT)
    first_remove = next(n for n, k, p in seen if k == "remove" and p.startswith("wal/"))
    crash_at(fs, first_remove + 1)  # the first segment removed, the second not yet
    run = run_script(fs, script, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert run.crash.startswith(f"op {first_remove + 1}: remove wal/")
    fs.crash()  # the removal was never made durable: both segments are back
    assert wal_files(fs) == [seg(1), seg(2), seg(3), seg(4)]
    _, rec = open_storage(fs, segment_bytes=ONE_BATCH_PER_SEGMENT)
    assert wal_files(fs) == [seg(4)]
    assert sum("compacted away already" in w for w in rec.warnings) == 3
    assert rec.state == expected_state(script)


def test_a_snapshot_acknowledged_after_falling_back_from_a_damaged_one_is_kept():
    """The newest snapshot (slot 20) is damaged; recovery falls back to the one at 10. Then a
    peer sends a snapshot at 15 (this node is behind: slots 11-18 went with the log compacted
    behind 20). ``persist`` returns, so the node restores its application from it and goes on.
    A crash later, the node must come back with that snapshot, not with the one at 10 and a
    hole where 11-15 were.

    ``save_snapshot`` compares the new slot with the newest snapshot *file* (the damaged 20),
    not the newest valid one, so it returns without writing anything.
    """
    fs = SimFileSystem()
    opts = {"segment_bytes": 200}
    script: list = [Persist(Ready(hard_state=hs(B)))]
    for s in range(1, 21):
        script.append(batch(s, choose=(s,)))
        if s in (10, 20):
            script.append(SaveSnapshot(snap(s)))
    script.append(batch(21))
    run = run_script(fs, script, **opts)
    assert run.storage is not None
    run.storage.close()
    fs.flip(snapshot_name(20), 60)
    storage, rec = open_storage(fs, **opts)
    assert rec.state.snapshot == snap(10) and len(rec.warnings) == 1
    assert sorted(rec.state.chosen) == [19, 20]  # the rest of the log was compacted away
    acked = Expect.of(rec.state)
    step = Persist(Ready(snapshot=snap(15), votes=(vote(22, B),)))
    storage.persist(step.ready)
    acked.add(step)
    fs.crash()
    _, rec = open_storage(fs, **opts)
    assert lost(acked, rec.state) == []
