"""Session churn: the leader's memory and snapshot stay flat however many sessions come and go.

Run by hand (a benchmark, not a test)::

    python benchmarks/session_churn.py [--sessions 20000] [--first 1000] [--concurrency 32]

Starts its own local 3-node cluster on 127.0.0.1 (``paxctl cluster up``, a snapshot every
``--snapshot-every`` slots), then runs ``--sessions`` sessions, ``--concurrency`` at a time,
each: open a session, set one znode (``/churn``), close the session. After the first
``--first`` sessions and after all of them it pauses, makes sure the leader has taken a snapshot
past that point (a helper session writes ``/filler`` until the newest snapshot file covers the
slot the leader had applied), and records the leader's RSS (``VmRSS`` from /proc/PID/status)
and the size of its newest snapshot file. Prints both with their ratio (acceptance: within
10%).

Each session's exactly-once entry and session-table entry go when it closes (the ids are never
reused: see paxctl/statemachine/machine.py), so nothing in the replicated state grows with the
number of sessions that ended. ``--watch-history`` (default here 1000) bounds the node's ring
of recent watch events, which otherwise fills towards its default of 100,000 events as writes
go by, sessions or not; pass 100000 to measure with the default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster

from paxctl.client import Client
from paxctl.storage.snapshots import SNAP_DIR, snapshot_name


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def newest_snapshot(data_dir: str) -> tuple[int, int]:
    """(slot, size in bytes) of the newest snapshot file in a node's data directory."""
    folder = os.path.join(data_dir, SNAP_DIR)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    slots = sorted(int(n.split(".")[0]) for n in names if n.endswith(".snap"))
    if not slots:
        return 0, 0
    return slots[-1], os.path.getsize(os.path.join(data_dir, snapshot_name(slots[-1])))


async def one_session(servers: str, k: int) -> None:
    client = Client(servers, timeout=60, session_timeout=10)
    try:
        await client.start()  # open
        await client.set("/churn", b"%d" % k)  # one write
    finally:
        await client.close()  # close: its ephemerals, entry and id are gone for good


async def churn(servers: str, first: int, last: int, concurrency: int) -> float:
    """Sessions ``first`` to ``last - 1``; returns the wall time taken."""
    started = time.monotonic()
    queue = iter(range(first, last))

    async def worker() -> None:
        for k in queue:
            await one_session(servers, k)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def measure(
    cluster: LocalCluster, leader: int, pid: int, filler: Client, label: str
) -> tuple[int, int, int]:
    """Await a leader snapshot past everything applied so far; (RSS KiB, snapshot bytes, slot)."""
    async with Client([cluster.address(leader)], timeout=30) as probe:
        status = await probe.status()
    assert status["role"] == "leader", f"node {leader} is no longer the leader"
    mark = int(status["applied"])
    data_dir = os.path.join(cluster.dir, f"node-{leader}")
    n = 0
    while newest_snapshot(data_dir)[0] < mark:  # writes move the log to the next snapshot
        n += 1
        await filler.set("/filler", b"%d" % n)
    slot, size = newest_snapshot(data_dir)
    rss = rss_kib(pid)
    print(
        f"{label}: leader node {leader} RSS {rss} KiB, newest snapshot at slot {slot}: "
        f"{size} bytes ({n} filler writes to reach slot {mark})",
        flush=True,
    )
    return rss, size, slot


async def run(args: argparse.Namespace, directory: str) -> None:
    node_args = ("--watch-history", str(args.watch_history))
    cluster = LocalCluster(directory, snapshot_every=args.snapshot_every, node_args=node_args)
    try:
        leader = int(cluster.leader()["id"])
        pid = cluster.pid(leader)
        servers = cluster.servers
        async with Client(servers, timeout=30) as setup:
            await setup.create("/churn")
            await setup.create("/filler")
        filler = Client(servers, timeout=30)
        await filler.start()
        try:
            t1 = await churn(servers, 0, args.first, args.concurrency)
            print(f"{args.first} sessions in {t1:.1f} s", flush=True)
            rss1, snap1, _ = await measure(cluster, leader, pid, filler, f"after {args.first}")
            t2 = await churn(servers, args.first, args.sessions, args.concurrency)
            print(f"{args.sessions - args.first} more sessions in {t2:.1f} s", flush=True)
            rss2, snap2, _ = await measure(cluster, leader, pid, filler, f"after {args.sessions}")
        finally:
            await filler.close()
        async with Client([cluster.address(leader)], timeout=30) as probe:
            status = await probe.status()
        print(f"open sessions at the end: {status['sessions']} (the filler's closed just now)")
        print(
            f"leader RSS: {rss1} KiB after {args.first}, {rss2} KiB after {args.sessions} "
            f"sessions: ratio {rss2 / rss1:.3f}"
        )
        print(
            f"leader snapshot: {snap1} bytes after {args.first}, {snap2} bytes after "
            f"{args.sessions} sessions: ratio {snap2 / snap1:.3f}"
        )
    finally:
        cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--first", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--watch-history", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, os.path.join(tmp, "churn")))


if __name__ == "__main__":
    main()
