"""Crash at every write and fsync of a scripted run; recovery keeps all that was acknowledged.

The script (``crash_script``) is run once to count its disk operations. Then, for every k, a
fresh simulated disk runs it again with a hook that raises ``SimulatedCrash`` at operation k; the
disk loses what was not synced (torn at random, or cleanly), and ``Storage.open`` must recover
without raising, keep every promise, vote and snapshot whose call returned, and every chosen
value whose batch was fsynced (a batch of only chosen values rides on the next vote batch's
fsync, by design: see ``Expect``), and return nothing that was never written. The recovered
storage then runs the rest of the script and a clean reopen must hold everything.
"""

from __future__ import annotations

import copy

import pytest
from storage_helpers import (
    Expect,
    Run,
    apply_step,
    chosen,
    count_ops,
    crash_at,
    crash_script,
    expected_state,
    invented,
    lost,
    open_storage,
    run_script,
    seeded,
    small_script,
    vote,
)

from paxctl.core.state import Ready
from paxctl.core.types import Ballot
from paxctl.storage.fs import OsFileSystem
from paxctl.storage.store import EmptyDataDirError
from paxctl.testing.simfs import SimFileSystem, SimulatedCrash

OPTS = {"segment_bytes": 256, "keep_snapshots": 2}


def total_ops(script: list, **opts: object) -> int:
    fs = SimFileSystem()
    run = run_script(fs, script, **opts)
    assert run.next_step == len(script) and not run.crash
    return fs.ops


def test_the_script_exercises_every_kind_of_write():
    """The crash sweep below is only as good as the script: check it rolls, compacts, prunes."""
    fs = SimFileSystem()
    seen: list[tuple[str, str]] = []
    fs.hook = lambda kind, path: seen.append((kind, path))
    run = run_script(fs, crash_script(), **OPTS)
    kinds = {(k, p.split("/")[0].split(".")[0]) for k, p in seen}
    assert {("create", "wal"), ("write", "wal"), ("sync", "wal"), ("sync_dir", "wal")} <= kinds
    assert {("remove", "wal"), ("remove", "snap"), ("rename", "snap"), ("rename", "meta")} <= kinds
    created = {p for k, p in seen if k == "create" and p.startswith("wal/")}
    assert len(created) >= 6, "the script should roll several segments"
    assert run.storage is not None
    assert len(run.storage.wal.segments) < len(created), "compaction should delete segments"
    assert len(fs.listdir("snap")) == 2  # four snapshots written, keep_snapshots=2
    run.storage.close()
    _, rec = open_storage(fs, **OPTS)
    assert rec.state == expected_state(crash_script())
    assert rec.warnings == []


def recover_after_crash(fs: SimFileSystem, run: Run, **opts: object):
    """Open the crashed disk the way the node would; for a crash inside the very first
    bootstrap, the directory holds no metadata yet, so only bootstrapping again may open it."""
    if not run.opened:
        # Nothing was ever acknowledged, and without metadata nothing can be: the directory is
        # empty as far as a restart without --bootstrap is concerned, and refused as such...
        with pytest.raises(EmptyDataDirError):
            open_storage(fs, **opts)
        # ...while the founding member that was bootstrapping simply bootstraps again.
        storage, rec = open_storage(fs, bootstrap=True, **opts)
        assert rec.state == expected_state([])
        return storage, rec
    return open_storage(fs, **opts)


def sweep(script: list, tear_seeds: list[int | None], **opts: object) -> tuple[list[str], int]:
    """Crash at every operation, with each tear mode; the problems found, one line each, and
    how many torn tails recovery cut on the way."""
    problems: list[str] = []
    cut = 0
    total = total_ops(script, **opts)
    for k in range(1, total + 1):
        for seed in tear_seeds:
            fs = SimFileSystem()
            crash_at(fs, k)
            run = run_script(fs, script, **opts)
            assert run.crash, f"op {k} of {total} did not crash the run"
            fs.crash(None if seed is None else seeded(k * 1000 + seed))
            where = f"crash at {run.crash} (step {run.next_step}, tear seed {seed})"
            try:
                storage, rec = recover_after_crash(fs, run, **opts)
            except Exception as exc:
                problems.append(f"{where}: recovery raised {type(exc).__name__}: {exc}")
                continue
            cut += sum("torn tail" in w for w in rec.warnings)
            problems += [f"{where}: {p}" for p in lost(run.acked, rec.state)]
            problems += [f"{where}: {p}" for p in invented(run.attempted, rec.state)]
            # The recovered storage must be fit to carry on: finish the script, reopen cleanly.
            if not run.opened:
                run = Run()
            run.storage = storage
            run.opened = True
            run = run_script(fs, script, run=run, **opts)
            assert run.storage is not None
            run.storage.close()
            try:
                _, rec = open_storage(fs, **opts)
            except Exception as exc:
                problems.append(f"{where}, then the rest: reopen raised {exc!r}")
                continue
            # (Re-saving the snapshot a crash interrupted is a no-op, so its compaction may lag.)
            after = lost(run.acked, rec.state, compaction=False)
            problems += [f"{where}, then the rest: {p}" for p in after]
            if rec.warnings:
                problems.append(f"{where}, then the rest: clean reopen warned {rec.warnings}")
    return problems, cut


def test_crash_at_every_operation_without_tearing():
    problems, cut = sweep(crash_script(), [None], **OPTS)
    assert not problems, "\n".join(problems[:20])
    assert cut == 0  # without tearing, unsynced bytes vanish whole


def test_crash_at_every_operation_with_torn_tails():
    problems, cut = sweep(crash_script(), [1, 2, 3], **OPTS)
    assert not problems, "\n".join(problems[:20])
    assert cut >= 10, "the seeded tears should leave torn tails for recovery to cut"


def test_crash_during_recovery_then_recover_again():
    """Recovery writes too (cuts a torn tail, removes leftovers, updates the metadata): a crash
    in the middle of any of those, and a power loss, must leave a disk that still recovers with
    everything acknowledged."""
    script = crash_script()
    problems: list[str] = []
    recovery_writes = 0
    for k in range(1, total_ops(script, **OPTS) + 1):
        base = SimFileSystem()
        crash_at(base, k)
        run = run_script(base, script, **OPTS)
        if not run.opened:
            continue
        base.crash(seeded(k))
        probe = copy.deepcopy(base)
        before = probe.ops
        open_storage(probe, **OPTS)
        n = probe.ops - before
        recovery_writes += n
        for j in range(1, n + 1):
            fs = copy.deepcopy(base)
            crash_at(fs, fs.ops + j)
            with pytest.raises(SimulatedCrash):
                open_storage(fs, **OPTS)
            fs.crash(seeded(k + j))
            where = f"crash at {run.crash}, then at recovery op {j}"
            try:
                _, rec = open_storage(fs, **OPTS)
            except Exception as exc:
                problems.append(f"{where}: second recovery raised {exc!r}")
                continue
            problems += [f"{where}: {p}" for p in lost(run.acked, rec.state)]
    assert recovery_writes > 20, "recovery should have had writes to interrupt"
    assert not problems, "\n".join(problems[:20])


def test_process_crash_then_power_loss_keeps_what_recovery_returned():
    """A process that dies between a write and its fsync leaves the bytes in the page cache:
    the restarted node reads them, and acts on them (a retransmitted Prepare at the ballot it
    read is answered with a Promise, without writing anything). A power loss afterwards must
    not take that state away, nor leave a directory that no longer opens.

    Modelled as: crash at op k *without* ``fs.crash`` (the page cache survives), reopen, then
    ``fs.crash()`` (power loss, nothing written in between), reopen again.
    """
    script = crash_script()
    problems: list[str] = []
    for k in range(1, total_ops(script, **OPTS) + 1):
        fs = SimFileSystem()
        crash_at(fs, k)
        run = run_script(fs, script, **OPTS)
        fs.hook = None
        if not run.opened:
            continue
        where = f"process crash at {run.crash}, restart, then power loss"
        _, first = open_storage(fs, **OPTS)
        fs.crash()
        try:
            _, second = open_storage(fs, **OPTS)
        except Exception as exc:
            problems.append(f"{where}: recovery raised {type(exc).__name__}: {exc}")
            continue
        # The acceptor's state: a promise or a vote the node read back is one it acts on (it
        # answers a retransmitted Prepare or Accept at that ballot without writing anything).
        gone = lost(Expect.of(first.state), second.state, chosen=False)
        problems += [f"{where}: {p}" for p in gone]
    assert not problems, f"{len(problems)} problems, the first ones:\n" + "\n".join(problems[:8])


# ---------------------------------------------------------------------- the real disk


def test_round_trip_on_the_real_disk(tmp_path):
    """The same code on OsFileSystem: a smaller script, restarts in the middle, no crash."""
    script = small_script()
    opts = {"segment_bytes": 160, "keep_snapshots": 2}
    fs = OsFileSystem(str(tmp_path / "node1"))
    storage, rec = open_storage(fs, bootstrap=True, **opts)
    assert rec.state == expected_state([])
    for i, step in enumerate(script):
        apply_step(storage, step)
        if i % 3 == 2:  # restart now and then: the reopened log must append where it left off
            storage.close()
            storage, rec = open_storage(fs, **opts)
            assert rec.state == expected_state(script[: i + 1]), f"after step {i}"
            assert rec.warnings == []
    storage.close()
    _, rec = open_storage(fs, **opts)
    assert rec.state == expected_state(script)
    assert rec.warnings == []
    assert len(fs.listdir("wal")) >= 2
    assert fs.listdir("snap") == ["00000000000000000005.snap", "00000000000000000007.snap"]


def test_the_real_disk_and_the_simulated_one_hold_the_same_bytes(tmp_path):
    """So the simulator's crash results speak for the real format."""
    script = small_script()
    opts = {"segment_bytes": 160, "keep_snapshots": 2}
    real = OsFileSystem(str(tmp_path / "node1"))
    sim = SimFileSystem()
    for fs in (real, sim):
        run = run_script(fs, script, **opts)
        assert run.storage is not None
        run.storage.close()
    for d in ("wal", "snap"):
        assert real.listdir(d) == sim.listdir(d)
        for name in real.listdir(d):
            assert real.read(f"{d}/{name}") == sim.read(f"{d}/{name}"), name
    assert real.read("meta") == sim.read("meta")
    assert real.listdir("") == ["meta", "snap", "wal"]


# ---------------------------------------------------------------------- named corners


def test_a_crash_during_the_first_bootstrap_leaves_a_directory_that_bootstraps_again():
    """Until the metadata is in place nothing was acknowledged: a restart without bootstrap
    refuses the directory as empty (EmptyDataDirError, a CorruptionError), and the founding
    member, bootstrapping again, gets a fresh node (the half-made segment is replaced)."""
    fs = SimFileSystem()
    bootstrap_ops = count_ops(fs, lambda: open_storage(fs, bootstrap=True))
    assert bootstrap_ops >= 8  # segment: create, write, sync, sync_dir; meta: five more
    for k in range(1, bootstrap_ops + 1):
        for tear in (None, seeded(k)):
            fs = SimFileSystem()
            crash_at(fs, k)
            with pytest.raises(SimulatedCrash):
                open_storage(fs, bootstrap=True)
            fs.crash(tear)
            assert not fs.exists("meta")
            with pytest.raises(EmptyDataDirError, match="the data directory is empty"):
                open_storage(fs)
            storage, rec = open_storage(fs, bootstrap=True)
            assert rec.state == expected_state([]) and rec.warnings == []
            storage.persist(Ready(votes=(vote(1, Ballot(1, 1)),)))
            storage.close()
            _, rec = open_storage(fs)
            assert sorted(rec.state.votes) == [1]


def test_a_chosen_only_batch_is_durable_once_the_next_vote_batch_returns():
    """By design (see ``Storage.persist``) a batch of only chosen values is not fsynced: a
    node that loses one learns it again. The crash sweep's expectation follows that rule, and
    this pins it down: such a batch may be lost by a power loss right after it, but is kept
    once a later batch with votes (and its fsync) returned."""
    b = Ballot(1, 1)
    fs = SimFileSystem()
    storage, _ = open_storage(fs, bootstrap=True)
    storage.persist(Ready(votes=(vote(1, b),)))
    storage.persist(Ready(chosen=(chosen(vote(1, b)),)))
    saved = copy.deepcopy(fs)  # the same disk, unsynced bytes and all
    saved.crash()
    _, rec = open_storage(saved)
    assert rec.state.chosen in ({}, {1: vote(1, b).value})  # either: it was never synced
    storage.persist(Ready(votes=(vote(2, b),)))
    fs.crash()
    _, rec = open_storage(fs)
    assert rec.state.chosen == {1: vote(1, b).value}


def test_a_batch_marked_sync_chosen_is_durable_when_persist_returns():
    """The exception (``Ready.sync_chosen``): the commit index passed a configuration's first
    slot, and a node removed by it may stop once this node said so. Its chosen values, and
    any an earlier batch left unsynced, survive a power loss right after the call."""
    b = Ballot(1, 1)
    fs = SimFileSystem()
    storage, _ = open_storage(fs, bootstrap=True)
    storage.persist(Ready(votes=(vote(1, b), vote(2, b))))
    storage.persist(Ready(chosen=(chosen(vote(1, b)),)))
    storage.persist(Ready(chosen=(chosen(vote(2, b)),), sync_chosen=True))
    saved = copy.deepcopy(fs)
    saved.crash()
    _, rec = open_storage(saved)
    assert rec.state.chosen == {1: vote(1, b).value, 2: vote(2, b).value}
    # Nothing new to write, but earlier chosen values unsynced: they are synced all the same.
    storage.persist(Ready(votes=(vote(3, b),)))
    storage.persist(Ready(chosen=(chosen(vote(3, b)),)))
    storage.persist(Ready(sync_chosen=True))
    fs.crash()
    _, rec = open_storage(fs)
    assert 3 in rec.state.chosen
