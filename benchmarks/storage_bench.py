"""Storage benchmark: commands/s, records/s and fsyncs per committed command.

Run by hand (never as a timed test)::

    python benchmarks/storage_bench.py [--dir DIR] [--seconds 5] [--concurrency 1 16 64]

A one-node cluster (so every slot is chosen by the node's own durable vote) runs the real core
and the real storage on the real disk. Each turn of the loop is one driver turn: every client
whose previous command was applied proposes its next one, the node hands out one Ready, the
storage makes it durable with one fsync, the chosen slots are applied. With C concurrent
clients, up to C commands share a slot and an fsync (group commit). It also measures the raw
latency of a 4 KiB append + fsync on the same directory, the floor for any of this.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

from paxctl.core.node import Node, Role
from paxctl.core.state import Config
from paxctl.core.types import Command
from paxctl.storage.fs import OsFileSystem
from paxctl.storage.store import Identity, Storage


def fsync_latency(directory: str, count: int = 200) -> list[float]:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block = os.urandom(4096)
    out = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            out.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.remove(path)
    return out


def run(directory: str, concurrency: int, seconds: float, payload: int) -> dict[str, float]:
    data_dir = tempfile.mkdtemp(prefix=f"c{concurrency}-", dir=directory)
    try:
        fs = OsFileSystem(data_dir)
        storage, _ = Storage.open(fs, Identity(b"paxctl-benchmark", 1), bootstrap=True)
        node = Node(Config(1, (1,), election_ticks=2, heartbeat_ticks=1), random.Random(1))
        while node.role is not Role.LEADER:  # elect the single node
            node.tick()
            storage.persist(node.ready())
            node.advance()
        seqs = dict.fromkeys(range(concurrency), 0)
        waiting: set[int] = set()
        body = b"x" * payload
        committed = turns = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for client, seq in seqs.items():
                if client not in waiting:
                    seqs[client] = seq + 1
                    node.propose(Command(client, seq + 1, body))
                    waiting.add(client)
            ready = node.ready()
            storage.persist(ready)
            for applied in ready.committed:
                for cmd in applied.commands:
                    waiting.discard(cmd.client)
                    committed += 1
            node.advance()
            turns += 1
        elapsed = time.perf_counter() - start
        stats = storage.stats
        storage.close()
        return {
            "commands/s": committed / elapsed,
            "records/s": stats.records / elapsed,
            "fsyncs/command": stats.log_fsyncs / max(committed, 1),
            "commands/slot": committed / max(turns, 1),
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--payload", type=int, default=100, help="bytes per command")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="paxctl-bench-")
    lat = sorted(fsync_latency(directory))
    p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
    print(f"disk: {directory}")
    print(f"4 KiB append+fsync latency: median {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms")
    header = ("clients", 8), ("commands/s", 12), ("records/s", 11), ("fsyncs/cmd", 11)
    print(" ".join(f"{name:>{width}}" for name, width in header), f"{'cmds/slot':>10}")
    for c in args.concurrency:
        r = run(directory, c, args.seconds, args.payload)
        print(
            f"{c:>8} {r['commands/s']:>12,.0f} {r['records/s']:>11,.0f} "
            f"{r['fsyncs/command']:>11.3f} {r['commands/slot']:>10.1f}"
        )
    if args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
