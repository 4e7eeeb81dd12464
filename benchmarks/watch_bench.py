"""Watch fan-out and session cost on a local 3-node cluster. Run by hand::

    python benchmarks/watch_bench.py [--watchers 50] [--writes 2000] [--sessions 500]

1. ``--watchers`` clients each hold a recursive watch on /bench, spread over the nodes; one
   writer sets a node ``--writes`` times (one write at a time, as a client does). Reports the
   writer's throughput with and without the watchers, and the delay from a write's
   acknowledgement to its event reaching each watcher (median and p99, one clock: this
   process).
2. ``--sessions`` idle sessions are opened and kept alive by their pings (a third of a 10 s
   timeout); reports the time to open them and the leader's CPU time over 10 s of idling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster

from paxctl.client import Client


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def writes(servers: str, n: int) -> tuple[float, dict[int, float]]:
    """Throughput of ``n`` sets, and when each one's zxid was acknowledged."""
    acked: dict[int, float] = {}
    async with Client(servers) as writer:
        if not await writer.exists("/bench/x"):
            await writer.create("/bench/x", b"", parents=True)
        start = time.perf_counter()
        for i in range(n):
            stat = await writer.set("/bench/x", str(i).encode())
            acked[int(stat["mzxid"])] = time.monotonic()
        return n / (time.perf_counter() - start), acked


async def fan_out(cluster: LocalCluster, watchers: int, n: int) -> None:
    base, _ = await writes(cluster.servers, n)
    print(f"writer alone: {base:,.0f} writes/s")
    clients = [Client([cluster.address(1 + i % cluster.nodes)]) for i in range(watchers)]
    arrivals: list[dict[int, float]] = [{} for _ in clients]
    watches = [await c.watch("/bench", recursive=True) for c in clients]

    async def drain(i: int) -> None:
        async for event in watches[i]:
            arrivals[i][event.zxid] = time.monotonic()
            if len(arrivals[i]) >= n:
                return

    drains = [asyncio.create_task(drain(i)) for i in range(watchers)]
    rate, acked = await writes(cluster.servers, n)
    await asyncio.wait_for(asyncio.gather(*drains), 120)
    delays = [(arrived[z] - acked[z]) * 1000 for arrived in arrivals for z in acked if z in arrived]
    complete = sum(len(a) == n for a in arrivals)
    print(
        f"with {watchers} recursive watchers: {rate:,.0f} writes/s; "
        f"{complete}/{watchers} watchers got all {n} events; "
        f"ack->event median {statistics.median(delays):.2f} ms, p99 {pct(delays, 0.99):.2f} ms"
    )
    for c in clients:
        await c.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_sessions(cluster: LocalCluster, n: int) -> None:
    leader = cluster.leader()["id"]
    clients = [Client(cluster.servers) for _ in range(n)]
    start = time.perf_counter()
    await asyncio.gather(*(c.start() for c in clients))
    opened = time.perf_counter() - start
    pid = cluster.pid(leader)
    before = cpu_seconds(pid)
    await asyncio.sleep(10)
    used = cpu_seconds(pid) - before
    alive = sum(c.session_id is not None for c in clients)
    print(
        f"{n} sessions opened in {opened:.2f} s; {alive} alive after 10 s idle; "
        f"leader CPU {used / 10 * 100:.1f}% of a core while idle"
    )
    await asyncio.gather(*(c.close() for c in clients))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(os.path.join(tmp, "c"))
        try:
            asyncio.run(fan_out(cluster, args.watchers, args.writes))
            asyncio.run(idle_sessions(cluster, args.sessions))
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
