"""Tier 2 for sessions, ephemerals and watches: the production Replica under seeded faults.

Each seed runs the ``znodes`` workload (see paxctl/testing/sim/znodes.py for the invariants):
expiry safety against answered pings, ephemerals gone with their session on every replica,
per-slot state digests, a watch validator per client (order, no duplicates, nothing missed, J1),
then liveness once healed. A failure prints the one command that replays it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from click.testing import CliRunner

from paxctl.cli import exits
from paxctl.cli.sim import sim
from paxctl.client import Client
from paxctl.client.session import ClientSession
from paxctl.testing.sim.runner import replay_command, run_seed, run_specs
from paxctl.testing.sim.world import SimSpec, Stats
from paxctl.testing.sim.znodes import ZNODE_BUGS, ZnodeWorld

JOBS = max(1, min(4, os.cpu_count() or 1))
SAFETY_MS = 2500  # shorter than the chain workload's: more seeds for the same time

#: Rare paths a sweep must have exercised, or it proves little.
RARE_PATHS = (
    "sessions_expired",
    "sessions_closed",
    "sessions_lost_seen",
    "silent_clients",
    "pings_answered",
    "client_failovers",
    "watch_events",
    "watch_replays",
    "resyncs",
    "reads_served",
    "snapshots_installed",
    "mid_write_crashes",
    "digest_audits",
)

#: Seeds each planted bug is given (every one is caught well inside this today).
PLANTED = {
    "ack_unrecorded": 20,  # the leader acknowledges heartbeats it never recorded (seed 1)
    "no_fresh_timeout": 150,  # a new leader counts from heartbeats it saw before leading (19)
    "skip_watch_replay": 20,  # a watch re-registered after a failover replays nothing (1)
    "no_forward_restamp": 20,  # a forwarded write keeps the forwarding node's clock (1)
    "forget_old_sessions": 20,  # the exactly-once table forgets live sessions' entries (3)
}


def spec(seed: int, nodes: int = 3, **kw) -> SimSpec:
    return SimSpec(seed=seed, nodes=nodes, workload="znodes", safety_ms=SAFETY_MS, **kw)


def sweep(nodes: int, seeds: range) -> tuple[list[str], Stats]:
    total, failures = Stats(), []
    for r in run_specs([spec(s, nodes) for s in seeds], jobs=JOBS):
        total.add(r.stats)
        if not r.ok:
            failures.append(f"{r.error}\n  replay: {replay_command(r.spec)}")
    return failures, total


@pytest.mark.slow
def test_500_seeds_with_faults_three_nodes():
    failures, total = sweep(3, range(1, 501))
    assert not failures, "\n".join(failures[:5])
    for counter in RARE_PATHS:
        assert getattr(total, counter) > 0, counter
    assert total.sessions_expired > 100 and total.watch_replays > 100


@pytest.mark.slow
def test_seeds_with_faults_five_nodes():
    failures, total = sweep(5, range(1, 151))
    assert not failures, "\n".join(failures[:5])
    assert total.sessions_expired > 0 and total.watch_events > 0


def test_a_few_seeds_without_faults():
    for r in run_specs([spec(s, faults=False) for s in range(1, 6)]):
        assert r.ok, f"{r.error}\n  replay: {replay_command(r.spec)}"
        assert r.stats.crashes == r.stats.partitions == r.stats.dropped == 0
        assert r.stats.completed > 0 and r.stats.pings_answered > 0


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_planted_bug_is_caught(bug):
    for seed in range(1, PLANTED[bug] + 1):
        result = run_seed(spec(seed, bugs=frozenset({bug})))
        if not result.ok:
            assert result.error.startswith("InvariantViolation"), result.error
            assert "liveness" not in result.error, "a safety bug must break a safety invariant"
            return
    pytest.fail(f"planted bug {bug!r} not caught in {PLANTED[bug]} seeds")


#: Planted bugs no seed shows on the current tree, and why each stays planted. The reaper
#: fence (liveness.py, rule 4) was shown needed end to end by one pinned seed at a time
#: (1134, 3866, 4513, 6002: about one seed in 2,000, with ``no_peer_checks`` planted too).
#: After issue 16's merge (early Accepts, batched reads, one-shot writes, failover on a closed
#: peer link) no seed showed it: 1-6,040 at 2.5 s, 1-1,800 at 5 s, 1-1,060 with five nodes.
#: Its parts are unit-tested (test_liveness.py: a new leader's fence, reaper numbers above
#: every earlier term's); a scripted scenario should replace the seed (see the session note).
UNSHOWN = {"no_reaper_fence"}


def test_every_planted_session_bug_is_tested():
    tested = set(PLANTED) | {"zxid_from_failed_hello"}
    assert tested | UNSHOWN == ZNODE_BUGS and not tested & UNSHOWN


def test_an_exactly_once_table_that_forgets_too_early_is_caught_by_the_exactly_once_check():
    """The planted bug keeps the entries of the newest sessions only: a retry of an older,
    still open session that is chosen a second time is applied twice, alike on every replica,
    so no digest differs. The oracle's model of the table (zoracle.py) catches it (seed 3: a
    client's write is retried on another node after a failover, and both copies are chosen)."""
    assert run_seed(spec(3)).ok
    broken = run_seed(spec(3, bugs=frozenset({"forget_old_sessions"})))
    assert not broken.ok and "exactly-once" in broken.error and "again" in broken.error


def test_the_planted_zxid_rule_loses_watch_events():
    """The client session counts the zxids of a connection only once its hello took effect.
    Planted (``ClientBugs.zxid_from_failed_hello``) it also takes the zxid of a hello the node
    refused (SessionExpired); if the hello it sends next is cut off too, it resumes its watches
    after that zxid and the events in between are lost (seed 634: client 1's hello is refused
    at 15.0, the retry's connection breaks, the next hello says after=15.0, and the create of
    /n4 at 14.0 is never delivered). The runs differ as the engine changes: seed 251 with a
    5-second fault phase shows it now (client 1 misses the delete of /n1 at 94.0 and next
    receives the delete of /n0 at 105.0; no seed of 1-2,700 showed it at 2.5 s once early
    Accepts, batched reads, one-shot writes and the faster failover met); seed 654 did until
    issue 15, then 545 until nodes began to forget a leader they no longer hear, then 1236
    until clients tried the next node at once, then 493 until the merge of issue 16."""
    zxid_spec = replace(spec(251), safety_ms=5000)
    assert run_seed(zxid_spec).ok
    broken = run_seed(replace(zxid_spec, bugs=frozenset({"zxid_from_failed_hello"})))
    assert not broken.ok and "watch of client" in broken.error


def test_the_simulated_clients_run_the_real_client_session():
    """One engine: the simulator's clients drive the very class the asyncio client drives, and
    the planted client bug is switched on in it, not in a copy."""
    world = ZnodeWorld(spec(3, bugs=frozenset({"zxid_from_failed_hello"})))
    assert world.zclients
    for c in world.zclients:
        assert type(c.s) is ClientSession
        assert c.s.bugs.zxid_from_failed_hello
    client = Client([("127.0.0.1", 1)])  # nothing is sent before a call
    assert type(client._session) is ClientSession
    assert not client._session.bugs.zxid_from_failed_hello


def test_same_seed_same_trace_in_process():
    a = run_seed(spec(7, trace=True))
    b = run_seed(spec(7, trace=True))
    assert len(a.trace) > 500 and a.trace == b.trace and a.stats == b.stats
    assert a.trace_digest != run_seed(spec(8, trace=True)).trace_digest


def test_same_seed_same_bytes_across_hash_seeds():
    def trace(hashseed: str) -> bytes:
        cmd = [sys.executable, "-m", "paxctl", "sim", "--workload", "znodes", "--seed", "5"]
        cmd += ["--safety-ms", str(SAFETY_MS), "--trace"]
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        done = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    first = trace("0")
    assert first.count(b"\n") > 500 and b"client" in first
    assert trace("4242") == first


def test_the_replay_command_names_the_workload_and_reproduces_the_run():
    s = spec(3)
    line = replay_command(s)
    assert "--workload znodes" in line and f"--safety-ms {SAFETY_MS}" in line
    args = line.split()[2:]  # after "paxctl sim"
    assert args[-1] == "--trace"
    out = CliRunner().invoke(sim, [*args[:-1], "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["workload"] == "znodes" and doc["passed"] == 1
    assert doc["stats"]["events"] == run_seed(s).stats.events


def test_a_failing_seed_prints_its_replay_line():
    args = ["--workload", "znodes", "--seeds", "2", "--safety-ms", str(SAFETY_MS)]
    out = CliRunner().invoke(sim, [*args, "--plant-bug", "ack_unrecorded"])
    assert out.exit_code == exits.VIOLATION == 9
    assert "--workload znodes" in out.output and "--plant-bug ack_unrecorded" in out.output


def test_session_bugs_need_the_znodes_workload():
    out = CliRunner().invoke(sim, ["--seeds", "1", "--plant-bug", "skip_watch_replay"])
    assert out.exit_code == 2 and "--workload znodes" in out.output
