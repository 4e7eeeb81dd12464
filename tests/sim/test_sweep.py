"""Tier 2: many seeds of the whole cluster under faults; every invariant after every event."""

from __future__ import annotations

import os

import pytest

from paxctl.testing.sim.runner import replay_command, run_specs
from paxctl.testing.sim.world import SimSpec

JOBS = max(1, min(4, os.cpu_count() or 1))


def _sweep(nodes: int, seeds: range, **kw) -> list[str]:
    specs = [SimSpec(seed=s, nodes=nodes, **kw) for s in seeds]
    return [
        f"{r.error}\n  replay: {replay_command(r.spec)}"
        for r in run_specs(specs, jobs=JOBS)
        if not r.ok
    ]


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_500_seeds_with_faults(nodes):
    failures = _sweep(nodes, range(1, 501))
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_other_cluster_sizes(nodes):
    failures = _sweep(nodes, range(1, 41))
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize(
    ("workload", "nodes", "extra"),
    [("chain", 3, {}), ("chain", 5, {}), ("znodes", 3, {}), ("chain", 3, {"reconfig": True})],
)
def test_link_events_keep_every_invariant(workload, nodes, extra):
    """Nodes fed the shell's link-up events (``SimSpec.links``) campaign within a heartbeat
    whenever they know no leader and reach a quorum, at boot and after every restart: every
    invariant still holds, and the hurried campaigns really happened."""
    specs = [
        SimSpec(seed=s, nodes=nodes, workload=workload, links=True, **extra) for s in range(1, 41)
    ]
    results = list(run_specs(specs, jobs=JOBS))
    failures = [f"{r.error}\n  replay: {replay_command(r.spec)}" for r in results if not r.ok]
    assert not failures, "\n".join(failures[:5])
    assert sum(r.stats.quorum_linked for r in results) > len(results)


def test_without_faults_every_command_completes_and_nothing_is_retried():
    for result in run_specs([SimSpec(seed=s, faults=False) for s in range(1, 11)]):
        assert result.ok, result.error
        assert result.stats.completed == result.stats.submitted > 0
        assert result.stats.crashes == result.stats.partitions == result.stats.dropped == 0


def test_faults_are_really_injected():
    """A sweep that passes because nothing went wrong proves nothing: count what was injected."""
    results = list(run_specs([SimSpec(seed=s) for s in range(1, 31)]))
    total = sum(r.stats.dropped for r in results), sum(r.stats.duplicated for r in results)
    assert all(total), total
    assert sum(r.stats.crashes for r in results) > 10
    assert sum(r.stats.partitions for r in results) > 10
    assert sum(r.stats.elections for r in results) > len(results)  # leaders changed under faults
    assert all(r.stats.completed > 0 for r in results)
    # The rare paths ran: preemption, adoption of earlier votes, no-op hole filling, catch-up,
    # crashes inside a write, torn tails cut at recovery, snapshots taken and installed.
    for counter in (
        "nacks",
        "step_downs",
        "adopted",
        "noop_fills",
        "catchups_served",
        "mid_write_crashes",
        "torn_tails_cut",
        "snapshots_taken",
        "snapshots_sent",
        "snapshots_installed",
        "reads_served",
    ):
        assert sum(getattr(r.stats, counter) for r in results) > 0, counter
