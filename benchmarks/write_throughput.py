"""Write throughput: small ``set``s from concurrent writers through a local 3-node cluster.

Run by hand (a benchmark, not a test)::

    python benchmarks/write_throughput.py [--writers 16] [--seconds 10] [--size 64] [--runs 3]

Each run starts its own local 3-node cluster on 127.0.0.1 (``paxctl cluster up`` through
tests/integration/local_cluster.py, with whichever ``paxctl`` is first on PATH), connects
``--writers`` clients (one connection each, to any node; writes reach the leader), gives each
its own znode of ``--size`` bytes, then has every writer ``set`` its znode in a loop for
``--seconds`` seconds. Prints, per run, the acknowledged writes per second and the median and
99th percentile latency, then the median of the runs. Every write goes through consensus
(an Accept to both followers, their Accepted back), so peer traffic is on the path of each one:
issue 14 measures the cost of the MAC on every peer frame with it (before and after).
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


async def drive(servers: str, writers: int, seconds: float, size: int) -> tuple[int, list[float]]:
    clients = [Client(servers, timeout=30) for _ in range(writers)]  # connect on first use
    latencies: list[float] = []
    try:
        for i, c in enumerate(clients):
            await c.create(f"/w{i}", b"")
        data = b"x" * size
        stop = time.monotonic() + seconds

        async def writer(i: int) -> None:
            c = clients[i]
            while time.monotonic() < stop:
                sent = time.monotonic()
                await c.set(f"/w{i}", data)
                latencies.append(time.monotonic() - sent)

        started = time.monotonic()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        elapsed = time.monotonic() - started
    finally:
        for c in clients:
            await c.close()
    return int(len(latencies) / elapsed), latencies


def one_run(writers: int, seconds: float, size: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(os.path.join(tmp, "c"))
        try:
            cluster.leader()
            rate, latencies = asyncio.run(drive(cluster.servers, writers, seconds, size))
        finally:
            cluster.down()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return rate, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=64, help="bytes of each znode's data")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates = []
    medians = []
    for run in range(1, args.runs + 1):
        rate, median, p99 = one_run(args.writers, args.seconds, args.size)
        rates.append(rate)
        medians.append(median)
        print(
            f"run {run}: {rate} writes/s, median {median:.2f} ms, p99 {p99:.2f} ms "
            f"({args.writers} writers, {args.size}-byte sets, {args.seconds:g} s)",
            flush=True,
        )
    print(
        f"median of {args.runs} runs: {statistics.median(rates):.0f} writes/s, "
        f"median latency {statistics.median(medians):.2f} ms"
    )


if __name__ == "__main__":
    main()
