"""A follower catching up a big tree by snapshot, on real processes. Run by hand::

    python benchmarks/snapshot_catchup.py [--mib 300] [--snapshot-every 100]

Starts a fresh local 3-node cluster, stops one follower (SIGKILL), writes ``--mib`` znodes of
1 MiB, then small writes until the leader has taken a snapshot covering every big one (so the
follower can only catch up by that snapshot), restarts the follower and measures, with one clock
in this process, the time from its restart to its applied index reaching the leader's. Prints
that time, the snapshot's size and the leader's and follower's resident memory (VmRSS, VmHWM).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster, wait_until

from paxctl.client import SyncClient

MIB = 1024 * 1024


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB: its resident memory now and at its peak."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def newest_snapshot_bytes(directory: str, node_id: int) -> int:
    snap = os.path.join(directory, f"node-{node_id}", "snap")
    sizes = [os.path.getsize(os.path.join(snap, n)) for n in os.listdir(snap) if ".snap" in n]
    return max(sizes, default=0)


def status(cluster: LocalCluster, node_id: int) -> dict[str, Any]:
    """A node's status, waiting out a busy moment (a node taking a big snapshot is slow)."""
    found: dict[str, Any] = wait_until(lambda: cluster.node_status(node_id), 60, "status")
    return found


def run(mib: int, snapshot_every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(os.environ.get("SNAP_BENCH_DIR") or tmp, "c")
        cluster = LocalCluster(directory, snapshot_every=snapshot_every)
        try:
            leader = cluster.leader()["id"]
            follower = next(i for i in (1, 2, 3) if i != leader)
            cluster.kill(follower)
            data = os.urandom(MIB - 64)
            started = time.monotonic()
            with SyncClient([cluster.address(leader)], timeout=60, session_timeout=60) as c:
                c.create("/big")
                for i in range(mib):
                    c.create(f"/big/{i:05d}", data)
                last_big = c.stat(f"/big/{mib - 1:05d}")["mzxid"] >> 16
                n = 0
                while status(cluster, leader)["compacted"] < last_big:
                    n += 1
                    c.create(f"/small-{n}")
            wrote = time.monotonic() - started
            st = status(cluster, leader)
            size = newest_snapshot_bytes(directory, leader)
            print(f"wrote {mib} MiB in {wrote:.1f} s; leader compacted through slot "
                  f"{st['compacted']}, snapshot file {size / MIB:.1f} MiB")  # fmt: skip
            restarted = time.monotonic()
            cluster.start(follower)

            def caught_up() -> bool:
                fs = cluster.node_status(follower)
                ls = cluster.node_status(leader)
                return bool(fs and ls and fs["applied"] >= ls["applied"])

            wait_until(caught_up, 600, "the follower to catch up", interval=0.05)
            took = time.monotonic() - restarted
            fs = status(cluster, follower)
            counters = fs["counters"]
            print(f"follower {follower} caught up in {took:.2f} s (from restart; "
                  f"{counters.get('snapshots_installed', 0)} snapshot installed, "
                  f"{counters.get('snapshot_chunks_received', 0)} chunks)")  # fmt: skip
            for name, node in (("leader", leader), ("follower", follower)):
                now, peak = rss_mib(cluster.pid(node))
                print(f"{name} {node}: RSS {now:.0f} MiB, peak {peak:.0f} MiB")
        finally:
            cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=300, help="znodes of 1 MiB to write")
    parser.add_argument("--snapshot-every", type=int, default=100)
    args = parser.parse_args()
    run(args.mib, args.snapshot_every)


if __name__ == "__main__":
    main()
