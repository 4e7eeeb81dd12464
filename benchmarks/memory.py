"""Resident memory of each node holding many small znodes, on real processes. Run by hand::

    python benchmarks/memory.py [--znodes 100000] [--size 100] [--clients 32]

Starts a fresh local 3-node cluster (``paxctl cluster up``, default settings) in a temporary
directory, records each node's resident memory idle, writes ``--znodes`` znodes of ``--size``
bytes under ``/bench`` with ``--clients`` concurrent clients of the Python library, then writes
small updates until every node has taken a snapshot after the last create (its status's
``compacted`` slot passes it: the log behind is dropped, the snapshot held), and prints each
node's VmRSS and VmHWM (peak) from ``/proc/PID/status`` after the creates and after that
snapshot, with the resident memory's split between the heap (RssAnon) and mapped files
(RssFile: the interpreter's and libraries' code), and how many applied slots its log holds
(those since its last snapshot, kept in memory for peers that catch up). Issue 16's target:
85 MiB per node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster, wait_until

from paxctl.client import Client, SyncClient

MIB = 1024 * 1024


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon (the heap) and RssFile (code and mapped files) of ``pid``, MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                found[key] = int(rest.split()[0]) / 1024
    return found


def show(cluster: LocalCluster, when: str) -> None:
    for node in range(1, cluster.nodes + 1):
        m = memory(cluster.pid(node))
        status = cluster.node_status(node) or {}
        log = int(status.get("applied") or 0) - int(status.get("compacted") or 0)
        counters = status.get("counters") or {}
        pulled = int(counters.get("snapshots_installed", 0))  # a lagging follower's catch-up
        print(
            f"{when:<22} node {node}: VmRSS {m.get('VmRSS', 0):6.1f} MiB  "
            f"VmHWM {m.get('VmHWM', 0):6.1f} MiB  (anon {m.get('RssAnon', 0):5.1f}, "
            f"file {m.get('RssFile', 0):4.1f}; {log} slots in the log; {status.get('role')}"
            f"{f', installed {pulled} snapshots from peers' if pulled else ''})",
            flush=True,
        )


async def fill(servers: str, znodes: int, size: int, writers: int) -> None:
    data = b"x" * size
    clients = [Client(servers, timeout=60) for _ in range(writers)]
    try:
        await clients[0].create("/bench", b"")

        async def writer(w: int) -> None:
            for i in range(w, znodes, writers):
                await clients[w].create(f"/bench/n{i:07d}", data)

        await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        for c in clients:
            await c.close()


def snapshot_after(cluster: LocalCluster, slot: int) -> None:
    """Write small updates until every node's snapshot covers ``slot`` (a status field)."""

    def covered() -> bool:
        for node in range(1, cluster.nodes + 1):
            status = cluster.node_status(node) or {}
            if int(status.get("compacted") or 0) < slot:
                return False
        return True

    with SyncClient(cluster.servers, timeout=30) as client:
        client.create("/tick", b"")
        while not covered():
            for _ in range(200):
                client.set("/tick", b"t")


def run(znodes: int, size: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(os.path.join(tmp, "c"))
        try:
            show(cluster, "idle")
            t0 = time.monotonic()
            asyncio.run(fill(cluster.servers, znodes, size, clients))
            print(f"wrote {znodes} znodes of {size} B with {clients} clients "
                  f"in {time.monotonic() - t0:.1f} s")  # fmt: skip
            leader = cluster.leader()
            wait_until(
                lambda: all(
                    int((cluster.node_status(n) or {}).get("applied", 0)) >= int(leader["applied"])
                    for n in range(1, cluster.nodes + 1)
                ),
                120,
                "every node to apply the creates",
            )
            show(cluster, "after the creates")
            snapshot_after(cluster, int(leader["applied"]))
            show(cluster, "after a snapshot")
        finally:
            cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--znodes", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    run(args.znodes, args.size, args.clients)


if __name__ == "__main__":
    main()
