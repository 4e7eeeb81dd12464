"""Failover time: leader killed with SIGKILL -> next write acknowledged. Run by hand::

    python benchmarks/failover.py [--runs 5] [--writers 3]

Each run starts a fresh local 3-node cluster, keeps a few writers busy, kills the leader with
SIGKILL and measures, with one clock in this process, the time from the kill to the first
acknowledgement of a write sent after the kill (writes already in flight at the kill do not
count). Prints every run and the median.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from local_cluster import LocalCluster, wait_until

from paxctl.client import Indeterminate


def one_run(writers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(os.path.join(tmp, "c"))
        try:
            leader = cluster.leader()
            stop = threading.Event()
            acks: list[tuple[float, float]] = []  # (sent, acknowledged)
            lock = threading.Lock()

            def writer(i: int) -> None:
                with cluster.client(timeout=30) as c:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        sent = time.monotonic()
                        try:
                            c.create(f"/w{i}-{n}")
                        except Indeterminate:
                            continue
                        with lock:
                            acks.append((sent, time.monotonic()))

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
            for t in threads:
                t.start()
            wait_until(lambda: len(acks) > 50, 30, "a steady write load")
            killed_at = time.monotonic()
            os.kill(cluster.pid(leader["id"]), signal.SIGKILL)
            first = wait_until(
                lambda: min((done for sent, done in list(acks) if sent > killed_at), default=0),
                30,
                "a write sent after the kill to be acknowledged",
            )
            stop.set()
            for t in threads:
                t.join(30)
            return float(first - killed_at)
        finally:
            cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--writers", type=int, default=3)
    args = parser.parse_args()
    times = []
    for run in range(1, args.runs + 1):
        t = one_run(args.writers)
        times.append(t)
        print(f"run {run}: leader killed -> next write acknowledged in {t * 1000:.0f} ms")
    print(
        f"median over {len(times)} runs: {statistics.median(times) * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
