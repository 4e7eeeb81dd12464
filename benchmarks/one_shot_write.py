"""A one-shot write with and without a session, in one process. Run by hand::

    python benchmarks/one_shot_write.py [--runs 40] [-s HOST:PORT,...]

What a ``paxctl set`` costs once Python has started: a fresh client connects, says hello,
writes one znode and closes. With ``one_shot`` (what the CLI does) that is one request and one
consensus round; with a session (what it did before) an open, the write and a close, three
rounds. The two are interleaved (A, B, B, A, ...) so that the machine's load touches both
alike, and the load average is printed: the machine may be shared. Without ``-s`` it starts a
local 3-node cluster in a temporary directory, and takes it down afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from paxctl.bench.local import free_base_port
from paxctl.client import SyncClient

PAXCTL = shutil.which("paxctl") or "paxctl"
PATH = "/one-shot-write"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_write(servers: str, one_shot: bool, value: bytes) -> float:
    """Milliseconds for a fresh client to write ``value`` once and close."""
    started = time.perf_counter()
    with SyncClient(servers, one_shot=one_shot) as client:
        client.set(PATH, value)
    return (time.perf_counter() - started) * 1000


def measure(servers: str, runs: int) -> None:
    with SyncClient(servers, one_shot=True) as client:
        client.put(PATH, b"")
    kinds = {"one-shot (1 round)": True, "session (3 rounds)": False}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    print(f"load average before: {load()}; {runs} runs each, interleaved")
    for i in range(runs):
        order = list(kinds.items()) if i % 2 else list(reversed(kinds.items()))
        for label, one_shot in order:
            times[label].append(one_write(servers, one_shot, b"v%d" % i))
    print(f"load average after:  {load()}")
    for label, ms in times.items():
        q1, _, q3 = statistics.quantiles(ms, n=4)
        print(f"{label:<20} median {statistics.median(ms):7.1f} ms  quartiles {q1:.1f}-{q3:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("-s", "--servers", help="a running cluster (default: start one)")
    opts = parser.parse_args()
    if opts.servers:
        measure(opts.servers, opts.runs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = free_base_port(3)
        up = [PAXCTL, "cluster", "up", "--dir", tmp, "--base-port", str(base)]
        subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
        try:
            measure(",".join(f"127.0.0.1:{base + i}" for i in (1, 2, 3)), opts.runs)
        finally:
            subprocess.run([PAXCTL, "cluster", "down", "--dir", tmp], check=False)


if __name__ == "__main__":
    main()
