"""Failover time: leader killed with SIGKILL -> next write acknowledged, paxctl beside ZooKeeper.

Run by hand (kazoo must be importable for ZooKeeper; paxctl comes from this checkout)::

    /work/venv-bench/bin/python benchmarks/failover.py [--runs 7] [--writers 3]
        [--systems paxctl,zookeeper]

Each run starts a fresh local 3-node cluster (paxctl through ``paxctl cluster up`` with its
default settings; ZooKeeper as benchmarks/zk_bench.py starts it), keeps ``--writers`` clients
busy writing one at a time, kills the leader with SIGKILL and measures, with one clock in this
process, the time from the kill to the first acknowledgement of a write sent after the kill
(writes already in flight at the kill do not count). The systems' runs are interleaved (A, B,
A, B ...) so that both see the same machine load. Prints every run and the medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests", "integration")]

from local_cluster import LocalCluster, wait_until  # noqa: E402

from paxctl.client import Indeterminate, Unavailable  # noqa: E402
from paxctl.client.errors import ConnectionLost  # noqa: E402

#: A writer: (writer number, write number) -> None once acknowledged; raises if it is not.
Write = Callable[[int, int], None]


def failover_time(
    writers: int,
    connect: Callable[[], tuple[Write, Callable[[], None]]],
    retryable: tuple[type[BaseException], ...],
    kill_leader: Callable[[], None],
) -> float:
    """Seconds from ``kill_leader()`` to the first acknowledged write sent after it."""
    stop = threading.Event()
    acks: list[tuple[float, float]] = []  # (sent, acknowledged)
    lock = threading.Lock()

    def writer(i: int) -> None:
        write, close = connect()
        try:
            n = 0
            while not stop.is_set():
                n += 1
                sent = time.monotonic()
                try:
                    write(i, n)
                except retryable:
                    continue
                with lock:
                    acks.append((sent, time.monotonic()))
        finally:
            close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acks) > 50, 60, "a steady write load")
        killed_at = time.monotonic()
        kill_leader()
        first = wait_until(
            lambda: min((done for sent, done in list(acks) if sent > killed_at), default=0),
            60,
            "a write sent after the kill to be acknowledged",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return float(first - killed_at)


def paxctl_run(writers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(os.path.join(tmp, "c"))
        try:
            leader = cluster.leader()

            def connect() -> tuple[Write, Callable[[], None]]:
                c = cluster.client(timeout=30)

                def write(i: int, n: int) -> None:
                    c.create(f"/w{i}-{n}")

                return write, c.close

            return failover_time(
                writers,
                connect,
                (Indeterminate, Unavailable, ConnectionLost),
                lambda: os.kill(cluster.pid(leader["id"]), signal.SIGKILL),
            )
        finally:
            cluster.down()


def _zk_mode(port: int) -> str:
    """``leader``, ``follower`` or ``""``, from the four-letter ``srvr`` command."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"srvr")
            text = b""
            while chunk := s.recv(4096):
                text += chunk
    except OSError:
        return ""
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return ""


def zookeeper_run(writers: int) -> float:
    from kazoo.client import KazooClient
    from kazoo.exceptions import KazooException
    from zk_bench import Ensemble

    ensemble = Ensemble()
    try:
        ensemble.start()
        leader = wait_until(
            lambda: next((i for i in (1, 2, 3) if _zk_mode(ensemble.base + i) == "leader"), None),
            30,
            "a ZooKeeper leader",
        )

        def connect() -> tuple[Write, Callable[[], None]]:
            zk = KazooClient(hosts=ensemble.servers, timeout=10)
            zk.start(timeout=30)

            def write(i: int, n: int) -> None:
                zk.create(f"/w{i}-{n}", b"")

            def close() -> None:
                zk.stop()
                zk.close()

            return write, close

        proc = ensemble.procs[leader - 1]
        return failover_time(writers, connect, (KazooException,), lambda: proc.send_signal(9))
    finally:
        ensemble.stop()


SYSTEMS: dict[str, Callable[[int], float]] = {"paxctl": paxctl_run, "zookeeper": zookeeper_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--systems", default="paxctl,zookeeper")
    args = parser.parse_args()
    names = [s for s in args.systems.split(",") if s]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    times: dict[str, list[float]] = {name: [] for name in names}
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    for run in range(1, args.runs + 1):
        for name in names:
            t = SYSTEMS[name](args.writers)
            times[name].append(t)
            print(f"run {run} {name}: leader killed -> next write acked in {t * 1000:.0f} ms")
            sys.stdout.flush()
    summary: dict[str, Any] = {}
    for name, ts in times.items():
        summary[name] = statistics.median(ts)
        print(
            f"{name}: median over {len(ts)} runs {statistics.median(ts) * 1000:.0f} ms "
            f"(min {min(ts) * 1000:.0f}, max {max(ts) * 1000:.0f})"
        )
    if "paxctl" in summary and "zookeeper" in summary:
        print(f"paxctl / ZooKeeper: {summary['paxctl'] / summary['zookeeper']:.2f}x")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
