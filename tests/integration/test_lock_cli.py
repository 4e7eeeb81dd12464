"""``paxctl lock`` as users run it: real processes against a real cluster.

Covers the issue's acceptance list for locks: 20 concurrent increments under the lock (also
while the leader is killed), a SIGSTOPped holder whose command dies before the next holder's
starts (and whose stale fence is refused), and the exit code of every documented case.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from held_cli import (
    Procs,
    child_count,
    cli_fixtures,
    intervals,
    poll,
    read_log,
    recorder,
    usage_errors,
)
from local_cluster import LocalCluster, free_base_port

pytestmark = pytest.mark.integration

INCREMENT = "read n < f; echo $((n+1)) > f"
#: Short sessions for the loss tests: margin 0.54 s, pings every 0.4 s, SIGTERM 0.3 s early.
FAST = ("--ttl", "2", "--kill-grace", "0.3")
TTL, MARGIN, GRACE = 2.0, 0.5 + 0.02 * 2.0, 0.3


cluster, procs = cli_fixtures("lock-cli")


def queue_length(cluster, name: str) -> int:
    return child_count(cluster, f"/paxctl/locks/{name}")


def increments(procs: Procs, tmp_path: Path, n: int, during=None) -> list[int]:
    (tmp_path / "f").write_text("0\n")
    started = [procs.start("lock", "counter", "--", "sh", "-c", INCREMENT) for _ in range(n)]
    if during is not None:
        during()
    codes = [p.wait(90) for p in started]
    for p, code in zip(started, codes, strict=True):
        assert code == 0, p.stderr()
    return codes


def test_twenty_concurrent_increments(procs, tmp_path):
    increments(procs, tmp_path, 20)
    assert (tmp_path / "f").read_text() == "20\n"


def test_twenty_concurrent_increments_while_the_leader_is_killed(tmp_path):
    cluster = LocalCluster(str(tmp_path / "own"))
    try:
        leader = int(cluster.leader()["id"])

        done_at_kill = []

        def kill_midway() -> None:
            poll(lambda: int((tmp_path / "f").read_text() or 0) >= 5, 60, "5 increments")
            cluster.kill(leader)
            done_at_kill.append(int((tmp_path / "f").read_text() or 0))

        with Procs(cluster.servers, tmp_path) as procs:
            increments(procs, tmp_path, 20, during=kill_midway)
        assert (tmp_path / "f").read_text() == "20\n"
        assert done_at_kill[0] < 20, "the leader died only after the last increment"
        assert int(cluster.leader()["id"]) != leader
    finally:
        cluster.down()


def test_a_stopped_holder_is_killed_before_the_next_holder_starts(cluster, procs, tmp_path):
    rec, log = recorder(tmp_path), tmp_path / "intervals"
    release = tmp_path / "release"
    with cluster.client() as c:
        c.create("/guarded-by-stopme", b"initial")
    first = procs.start("lock", *FAST, "stopme", "--", "python3", rec, str(log), "A", "60")
    poll(lambda: "A" in intervals(log), 20, "A's command to start")
    second = procs.start(
        "lock", *FAST, "stopme", "--", "python3", rec, str(log), "B", "60", str(release)
    )
    poll(lambda: queue_length(cluster, "stopme") == 2, 20, "B to queue")

    first.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    poll(lambda: "B" in intervals(log), 20, "B's command to start")
    spans = intervals(log)
    a_start, a_end = spans["A"]
    b_start, _ = spans["B"]
    assert a_end is not None, "A's command was not stopped"
    assert a_start < a_end < b_start, spans
    # The watchdog sent SIGTERM at (last acknowledged ping) + TTL - margin - grace, and the
    # last acknowledged ping was sent before the SIGSTOP.
    assert a_end - stopped_at < TTL - MARGIN - GRACE + 0.5, a_end - stopped_at
    print(f"\nA's CMD got SIGTERM {a_end - stopped_at:.2f}s after SIGSTOP; "
          f"B's CMD started {b_start - a_end:.2f}s after A's ended")  # fmt: skip

    fences = {name: fence for what, name, _, fence in read_log(log) if what == "start"}
    assert fences["A"] != fences["B"] and fences["A"].startswith("stopme:")
    stale = procs.run("set", "/guarded-by-stopme", "stale", "--fence", fences["A"])
    assert stale.returncode == 4 and "FenceRejected" in stale.stderr, stale.stderr
    fresh = procs.run("set", "/guarded-by-stopme", "fresh", "--fence", fences["B"])
    assert fresh.returncode == 0, fresh.stderr
    with cluster.client() as c:
        assert c.get("/guarded-by-stopme")[0] == b"fresh"

    first.signal(signal.SIGCONT)
    assert first.wait(20) == 8
    assert "lost" in first.stderr()
    release.touch()
    assert second.wait(20) == 0, second.stderr()


def test_the_commands_exit_code_and_environment(procs):
    done = procs.run(
        "lock", "codes", "--", "sh", "-c", 'echo "$PAXCTL_FENCE $PAXCTL_LOCK_PATH"; exit 7'
    )
    assert done.returncode == 7, done.stderr
    fence, path = done.stdout.split()
    assert fence.startswith("codes:") and fence.split(":")[1].isdigit()
    assert path == "/paxctl/locks/codes"
    # killed by a signal: 128+N, as a shell says
    assert procs.run("lock", "codes", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    assert procs.run("lock", "codes", "-c", "kill -KILL $$").returncode == 128 + signal.SIGKILL
    assert procs.run("lock", "codes", "--", "no-such-command-xyz").returncode == 127
    (procs.cwd / "not-executable").write_text("#!/bin/sh\n")
    assert procs.run("lock", "codes", "--", "./not-executable").returncode == 126
    # stdin passes through; -c and options after NAME
    piped = procs.run("lock", "codes", "-v", "--", "cat", input="through stdin\n")
    assert piped.stdout == "through stdin\n" and "acquired lock codes" in piped.stderr


def test_a_signal_is_forwarded_to_the_command(procs, tmp_path):
    rec, log = recorder(tmp_path), tmp_path / "log"
    p = procs.start("lock", "fwd", "--", "python3", rec, str(log), "X", "60")
    poll(lambda: "X" in intervals(log), 20, "the command to start")
    p.signal(signal.SIGTERM)
    assert p.wait(20) == 143
    assert intervals(log)["X"][1] is not None


def test_not_acquired_exit_codes(procs, cluster):
    holder = procs.start("lock", "--owner", "the holder", "busy")
    line = holder.wait_output("\n")
    path, fence = line.strip().split("\t")
    assert path == "/paxctl/locks/busy" and fence.startswith("busy:")

    assert procs.run("lock", "-n", "busy", "true").returncode == 1
    assert procs.run("lock", "-n", "-E", "9", "busy", "true").returncode == 9
    assert procs.run("lock", "busy", "-w", "0", "-E", "10", "--", "true").returncode == 10
    began = time.monotonic()
    waited = procs.run("lock", "-w", "0.5", "busy", "true")
    assert waited.returncode == 1 and time.monotonic() - began >= 0.5

    # a waiter interrupted before it got the lock: 128+N, and it leaves the queue
    waiter = procs.start("lock", "busy", "--", "true")
    poll(lambda: queue_length(cluster, "busy") == 2, 20, "the waiter to queue")
    status = json.loads(procs.run("lock", "status", "busy", "--json").stdout)
    assert [h["owner"] for h in status["holders"]] == ["the holder"]
    assert [w["owner"] for w in status["waiting"]] == ["true"]
    assert status["holders"][0]["token"] == int(fence.split(":")[1])
    assert status["holders"][0]["pid"] == holder.pid
    header, *rows = [
        line.split("\t") for line in procs.run("lock", "status", "busy").stdout.splitlines()
    ]
    assert header == ["role", "token", "kind", "host", "pid", "since", "owner"]  # TSV when piped
    assert [(r[0], r[-1]) for r in rows] == [("holder", "the holder"), ("waiting", "true")]
    waiter.signal(signal.SIGINT)
    assert waiter.wait(20) == 128 + signal.SIGINT
    poll(lambda: queue_length(cluster, "busy") == 1, 20, "the waiter to leave")

    # the holder's fence works for writes; after SIGTERM it releases and exits 0
    with cluster.client() as c:
        c.create("/guarded-by-busy", b"")
    assert procs.run("set", "/guarded-by-busy", "x", "--fence", fence).returncode == 0
    holder.signal(signal.SIGTERM)
    assert holder.wait(20) == 0
    assert procs.run("lock", "status", "busy").stdout.strip() == "/paxctl/locks/busy: not held"
    assert procs.run("lock", "-n", "busy", "true").returncode == 0


def test_shared_and_semaphore_holders(procs):
    readers = [procs.start("lock", "-s", "rw"), procs.start("lock", "-s", "rw", "--json")]
    path, token = readers[0].wait_output("\n").split()
    assert path == "/paxctl/locks/rw" and token.isdigit()  # no fence: no single holder
    doc = json.loads(readers[1].wait_output("\n"))
    assert doc["path"] == path and doc["fence"] is None and doc["token"] != int(token)
    assert procs.run("lock", "-n", "rw", "true").returncode == 1  # a writer waits
    state = json.loads(procs.run("lock", "status", "rw", "--json").stdout)
    assert len(state["holders"]) == 2 and all(h["kind"] == "read" for h in state["holders"])
    sems = [procs.start("lock", "--limit", "2", "sem") for _ in range(2)]
    for s in sems:
        s.wait_output("\n")
    assert procs.run("lock", "--limit", "2", "-n", "sem", "true").returncode == 1
    mismatch = procs.run("lock", "--limit", "3", "sem", "true")
    assert mismatch.returncode == 4 and "limit" in mismatch.stderr
    assert procs.run("lock", "-n", "sem", "true").returncode == 4  # not a plain lock
    for p in readers + sems:
        p.signal(signal.SIGTERM)
        assert p.wait(20) == 0


def test_lost_while_held_exits_8(cluster, procs, tmp_path):
    """An operator breaks the lock (deletes the holder's node): the command is stopped at
    once and paxctl exits 8, as when the session expires."""
    rec, log = recorder(tmp_path), tmp_path / "log"
    p = procs.start("lock", *FAST, "broken", "--", "python3", rec, str(log), "X", "60")
    poll(lambda: "X" in intervals(log), 20, "the command to start")
    with cluster.client() as c:
        (node,) = c.children("/paxctl/locks/broken")
        c.delete(f"/paxctl/locks/broken/{node}")
    assert p.wait(20) == 8
    assert intervals(log)["X"][1] is not None and "lost" in p.stderr()

    holder = procs.start("lock", *FAST, "broken")
    holder.wait_output("\n")
    with cluster.client() as c:
        (node,) = c.children("/paxctl/locks/broken")
        c.delete(f"/paxctl/locks/broken/{node}")
    assert holder.wait(20) == 8


def test_cluster_unavailable_exits_5(procs):
    dead = f"127.0.0.1:{free_base_port(1) + 1}"
    done = procs.run("lock", "--servers", dead, "--timeout", "1", "x", "--", "touch", "ran")
    assert done.returncode == 5 and "Unavailable" in done.stderr
    assert not (procs.cwd / "ran").exists()


USAGE_ERRORS = [
    ("--bogus", "x", "true"),
    ("x", "--bogus", "--", "true"),
    ("-s", "--limit", "2", "x", "true"),
    ("-c", "true", "x", "--", "true"),
    ("--ttl", "2", "x", "true"),  # kill-grace 5 + margin 0.54 + ping 0.4 >= 2
    ("-E", "300", "x", "true"),
    (),
]


def test_usage_errors_exit_2(tmp_path):
    for args, err in usage_errors("lock", USAGE_ERRORS):
        if "--ttl" in args:
            assert "must be less than --ttl" in err, err
