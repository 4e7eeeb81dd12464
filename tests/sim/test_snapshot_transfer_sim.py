"""State transfer under faults: snapshots pulled in many tiny chunks through a lossy,
duplicating, reordering network, with crashes (senders restart) and partitions (sources change).

The chain workload snapshots every 10 to 150 slots (as the seed draws) and each snapshot is a
few hundred bytes; with 7-byte chunks every transfer spans dozens of chunks, so lost, duplicated
and late chunks, retransmission, abandoned sources and restarts with a newer snapshot all occur.
"""

from __future__ import annotations

from collections import Counter

from paxctl.testing.sim.runner import replay_command
from paxctl.testing.sim.world import SimSpec, World
from paxctl.testing.sim.znodes import ZnodeWorld

SEEDS = range(1, 41)


def test_tiny_chunks_under_faults_keep_every_invariant_and_transfers_complete():
    counts: Counter[str] = Counter()
    failures = []
    for seed in SEEDS:
        world = World(SimSpec(seed=seed, snapshot_chunk=7))
        result = world.run()
        if not result.ok:
            failures.append(f"{result.error}\n  replay: {replay_command(result.spec)}")
        for host in world.hosts.values():
            counts.update(host.counters)
    assert not failures, "\n".join(failures[:3])
    assert counts["snapshots_installed"] > 10
    assert counts["snapshot_chunks_sent"] > 10 * counts["snapshots_installed"]
    # The faults reached the transfers: chunks came late, twice or for a finished transfer
    # (refused and counted), and sources were given up on; the replicas stayed consistent.
    assert counts["snapshot_unsolicited"] + counts["snapshot_bad_chunk"] > 0
    assert counts["snapshot_transfers_abandoned"] > 0


def test_tiny_chunks_with_the_production_engine():
    installed = 0
    for seed in range(1, 16):
        world = ZnodeWorld(SimSpec(seed=seed, workload="znodes", safety_ms=2500, snapshot_chunk=64))
        result = world.run()
        assert result.ok, f"{result.error}\n  replay: {replay_command(result.spec)}"
        installed += result.stats.snapshots_installed
    assert installed > 0
