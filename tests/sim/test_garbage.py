"""The garbage peer (``paxctl sim --garbage``): well-typed but invalid messages must not hurt.

Every seed adds an injector that hands nodes messages they must drop (see
paxctl/testing/sim/garbage.py): absurd rounds, ballots their sender cannot have issued, votes
far beyond the window, unsolicited catch-up (for the next slot and for slot 10**9), read
points never asked, Forwards posing as the reaper, Relays from a stranger, stale replays. All
the usual safety checks run after every event and every pending command must still complete
once healed. With the checks planted off (``no_peer_checks``) the same seeds fail.
"""

from __future__ import annotations

import os

from paxctl.testing.sim.runner import replay_command, run_seed, run_specs
from paxctl.testing.sim.world import SimSpec, Stats

JOBS = max(1, min(4, os.cpu_count() or 1))
SAFETY_MS = 2000  # shorter than the plain sweeps': more seeds for the same time
NO_CHECKS = frozenset({"no_peer_checks"})


def spec(seed: int, workload: str = "chain", nodes: int = 3, **kw) -> SimSpec:
    return SimSpec(
        seed=seed, nodes=nodes, workload=workload, safety_ms=SAFETY_MS, garbage=True, **kw
    )


def sweep(specs: list[SimSpec]) -> Stats:
    total, failures = Stats(), []
    for r in run_specs(specs, jobs=JOBS):
        total.add(r.stats)
        if not r.ok:
            failures.append(f"{r.error}\n  replay: {replay_command(r.spec)}")
    assert not failures, "\n".join(failures[:5])
    return total


def test_garbage_sweep_chain_workload():
    specs = [spec(s) for s in range(1, 41)] + [spec(s, nodes=5) for s in range(1, 11)]
    total = sweep(specs)
    assert total.garbage > 1000 and total.rejected > 1000
    assert total.completed > 0 and total.reads_served > 0


def test_garbage_sweep_znodes_workload():
    total = sweep([spec(s, "znodes") for s in range(1, 31)])
    assert total.garbage > 500 and total.rejected > 500
    assert total.sessions_expired > 0 and total.completed > 0


def test_the_garbage_peer_bites_without_the_checks():
    """Seed 1, chain: an unsolicited catch-up reply for the next slot is learned as chosen.
    Seed 5, znodes: a Forward posing as the reaper with seq 2**63 - 1 gets its command chosen
    (seeds move when the garbage peer learns new kinds of message: re-pin on the same error)."""
    assert run_seed(spec(1)).ok
    broken = run_seed(spec(1, bugs=NO_CHECKS))
    assert not broken.ok and "no majority voted for" in broken.error, broken.error
    assert run_seed(spec(5, "znodes")).ok
    broken = run_seed(spec(5, "znodes", bugs=NO_CHECKS))
    assert not broken.ok and "9223372036854775807 nobody proposed" in broken.error, broken.error


def test_the_replay_line_names_the_garbage_peer():
    assert "--garbage" in replay_command(spec(7)).split()
