"""Reconfiguration under faults (``paxctl sim --reconfig``, paxctl/testing/sim/reconfig.py).

Every seed changes the membership while messages are dropped, duplicated and delayed, links are
cut and nodes crash (in the middle of writes too) and take snapshots: learners join on empty
disks and are promoted once caught up (or stay learners), voters are removed (the leader too) or
replaced (some after their disk died), and removed nodes shut down. The oracle counts each
slot's votes against the configuration the chosen log makes for that slot (each voter with its
disk), checks every node's configuration against it, and once healed the cluster, in whatever
shape, must promote its waiting learner and commit. Planted bugs in the core must be caught
(a leader that asks only the newest configuration's majority, by the window nemesis of some
seeds: a network that starves one side of a replacement's alpha window, then cuts it off).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from paxctl.testing.sim.runner import replay_command, run_seed, run_specs
from paxctl.testing.sim.world import SimSpec, Stats

JOBS = max(1, min(2, os.cpu_count() or 1))
SAFETY_MS = 3000  # shorter than the plain sweeps': more seeds (and so more changes) per second


def spec(seed: int, nodes: int = 3, **kw) -> SimSpec:
    return SimSpec(seed=seed, nodes=nodes, reconfig=True, safety_ms=SAFETY_MS, **kw)


def test_reconfiguration_under_faults():
    specs = [spec(s) for s in range(1, 25)] + [spec(s, nodes=5) for s in range(1, 7)]
    total, failures = Stats(), []
    for r in run_specs(specs, jobs=JOBS):
        total.add(r.stats)
        if not r.ok:
            failures.append(f"{r.error}\n  replay: {replay_command(r.spec)}")
    assert not failures, "\n".join(failures[:5])
    # What the sweep went through: every kind of change, and every kind of fault with them.
    for counter in (
        "changes_taken",
        "changes_refused",  # stale bases, and a change asked while one was in flight
        "nodes_added",
        "promotions",
        "nodes_retired",
        "leader_removals",
        "nodes_lost",
        "handovers_taken",
        "dropped",
        "duplicated",
        "partitions",
        "crashes",
        "snapshots_installed",
        "nemesis_episodes",  # the window nemesis (paxctl/testing/sim/nemesis.py) went for one
    ):
        assert getattr(total, counter) > 0, counter
    assert total.completed > 0


#: Seeds that once failed liveness at the default safety phase (6,000 ms), and what failed:
#: the schedule lost a second voter of a configuration still in force (241, 346); a leader
#: never voted for slots it adopted beyond the window (156); a removed node stopped while the
#: voter left did not durably know the slots it governed were decided (212, 292). 104 too (the
#: lead's example; it passes since 5e0e26b).
DEFAULT_SAFETY_SEEDS = [(104, 3), (156, 3), (212, 3), (241, 3), (292, 3), (346, 3)]


def test_seeds_that_once_stalled_at_the_default_safety_phase():
    specs = [SimSpec(seed=s, nodes=n, reconfig=True) for s, n in DEFAULT_SAFETY_SEEDS]
    assert {s.safety_ms for s in specs} == {6000}
    failures = [
        f"{r.error}\n  replay: {replay_command(r.spec)}"
        for r in run_specs(specs, jobs=JOBS)
        if not r.ok
    ]
    assert not failures, "\n".join(failures)


#: Each planted bug of membership changes, a seed where it breaks an invariant, and the
#: invariant it breaks (a pattern: which node and slot show it move with every change to the
#: schedule, the invariant does not; re-pin on the same invariant when the seed stops showing it).
#: ``p1_new_config_only`` needs the window nemesis (nemesis.py), which half of the seeds run:
#: it went for about one seed in 30 and caught the bug on 3 of seeds 1-200 (3 of 100 with five
#: nodes), never failing a seed without the bug.
PINNED = [
    ("count_removed", 9, r"InvariantViolation: node \d+ learned slot \d+ that no majority voted"),
    ("two_changes_in_flight", 3, r"InvariantViolation: node \d+'s configuration after slot \d+ is"),
    ("p1_new_config_only", 7, r"InvariantViolation: slot \d+ chosen with two different values"),
]


@pytest.mark.parametrize(("bug", "seed", "error"), PINNED)
def test_planted_membership_bugs_are_caught(bug, seed, error):
    assert run_seed(spec(seed)).ok  # the seed is fine without the bug
    broken = run_seed(spec(seed, bugs=frozenset({bug})))
    assert not broken.ok and re.match(error, broken.error or ""), broken.error


def test_a_correct_cluster_survives_the_window_nemesis():
    """On the seed pinned for ``p1_new_config_only`` the trap is set (one side knows the
    promotion, the other chose a command in the window it never saw, and it is cut off), and
    without the bug nobody chooses a second value and the healed cluster finishes."""
    result = run_seed(spec(7, trace=True))
    assert result.ok, result.error
    assert result.stats.nemesis_episodes >= 1 and result.stats.nemesis_cuts >= 1
    assert any(" NEMESIS cuts " in line for line in result.trace)


def test_replay_is_identical_with_reconfiguration():
    """Same seed, same trace: in one process, and from the command line under another hash
    seed (hosts come and go in the same order)."""
    a = run_seed(spec(3, trace=True))
    b = run_seed(spec(3, trace=True))
    assert a.ok, a.error
    assert a.trace == b.trace and a.stats == b.stats
    assert any(" CONFIG " in line for line in a.trace)
    assert any("new host" in line for line in a.trace)
    cmd = [sys.executable, "-m", "paxctl", *replay_command(a.spec).split()[1:]]
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    done = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines()[: len(a.trace)] == a.trace  # (then the summary)


def test_the_replay_line_asks_for_reconfiguration():
    line = replay_command(spec(7)).split()
    assert "--reconfig" in line and line[line.index("--safety-ms") + 1] == str(SAFETY_MS)
