"""A learner joining a loaded cluster, on real processes. Run by hand::

    python benchmarks/learner_catchup.py [--znodes 100000] [--size 100]

Starts a fresh local 3-node cluster, writes ``--znodes`` znodes of ``--size`` bytes (64
writers), then runs ``paxctl cluster add --learner`` (which starts the new node with ``--join``)
and measures, with one clock in this process, the time from that command's start to the
learner's applied index reaching the leader's. The learner starts empty: it gets a snapshot
(made on its request if none covers the log yet) and the log after it. Prints the times, the
learner's resident memory and the snapshot's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster, paxctl, wait_until

from paxctl.client import Client


async def fill(servers: str, znodes: int, size: int, writers: int = 64) -> None:
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


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(znodes: int, size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "c")
        cluster = LocalCluster(directory)
        try:
            t0 = time.monotonic()
            asyncio.run(fill(cluster.servers, znodes, size))
            print(f"wrote {znodes} znodes of {size} B in {time.monotonic() - t0:.1f} s")
            leader = cluster.leader()
            start = time.monotonic()
            add = ("cluster", "add", "--learner", "--dir", directory, "-o", "json", "--wait", "900")
            out = paxctl(*add, timeout=900)
            added = time.monotonic()
            doc = json.loads(out.stdout)
            new_id = int(doc.get("id") or doc.get("node") or max(m["id"] for m in doc["members"]))
            target = cluster.node_status(leader["id"]) or leader

            def caught_up() -> dict[str, object] | None:
                status = cluster.node_status(new_id)
                if status and int(status["applied"]) >= int(target["applied"]):
                    return status
                return None

            status = wait_until(caught_up, 600, "the learner to catch up")
            done = time.monotonic()
            print(f"cluster add --learner returned after {added - start:.2f} s")
            print(f"learner {new_id} caught up to slot {status['applied']} "
                  f"{done - start:.2f} s after the add began")  # fmt: skip
            with open(os.path.join(directory, f"node-{new_id}.pid")) as f:
                print(f"learner peak RSS {rss_mib(int(f.read())):.0f} MiB")
        finally:
            cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--znodes", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    run(args.znodes, args.size)


if __name__ == "__main__":
    main()
