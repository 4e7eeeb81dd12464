"""ZooKeeper's side of benchmarks/results.py: a 3-node ensemble on loopback, driven by kazoo.

kazoo's client is synchronous (a thread per connection underneath), so each simulated client
is a thread with its own ``KazooClient``: one connection and one session each, as paxctl's.
ZooKeeper reads are not linearizable (they answer from the server the client is connected to,
like ``paxctl bench read --local``), so its reads are figures of local reads only.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from others import ZK_JAR, run_figures

from paxctl.bench.local import free_base_port
from paxctl.bench.stats import summary

#: kazoo logs every refused connection while the ensemble starts: not news here.
logging.getLogger("kazoo").setLevel(logging.CRITICAL)

#: key -> (what, clients, kind); the keys are results.py's.
FIGURES: dict[str, tuple[str, int, str]] = {
    "write-1": ("write, 1 client", 1, "write"),
    "write-64": ("write, 64 clients", 64, "write"),
    "local-read-16": ("read (not linearizable), 16 clients", 16, "read"),
    "mixed-16": ("mixed (90% reads, not linearizable), 16 clients", 16, "mixed"),
    "lock-1": ("lock acquire+release (kazoo Lock), 1 client", 1, "lock"),
    "lock-16": ("lock acquire+release (kazoo Lock), 16 clients on one lock", 16, "lock"),
    "ephemeral-seq-16": ("create ephemeral sequential, 16 clients", 16, "ephemeral"),
}
NOT_MEASURED = {
    "read-1": "ZooKeeper's reads are not linearizable (see local read)",
    "read-16": "ZooKeeper's reads are not linearizable (see local read)",
}


class Ensemble:
    """Three ZooKeeper servers on 127.0.0.1 (client port base+i, quorum base+100+i, election
    base+200+i), data and logs in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zk-bench-")
        self.base = free_base_port(203)  # room for the three port ranges
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.base + i}" for i in (1, 2, 3))

    def start(self) -> None:
        peers = "".join(
            f"server.{i}=127.0.0.1:{self.base + 100 + i}:{self.base + 200 + i}\n" for i in (1, 2, 3)
        )
        for i in (1, 2, 3):
            data = os.path.join(self.dir, f"node-{i}")
            os.makedirs(data)
            with open(os.path.join(data, "myid"), "w") as f:
                f.write(f"{i}\n")
            cfg = os.path.join(self.dir, f"zoo-{i}.cfg")
            with open(cfg, "w") as f:
                f.write(
                    f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\n"
                    f"clientPort={self.base + i}\nclientPortAddress=127.0.0.1\n"
                    "admin.enableServer=false\nmaxClientCnxns=0\n" + peers
                )
            log = open(os.path.join(self.dir, f"node-{i}.log"), "wb")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(
                    [
                        "java",
                        "-cp",
                        ZK_JAR,
                        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                        cfg,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        from kazoo.client import KazooClient

        deadline = time.monotonic() + 60
        while True:
            client = KazooClient(hosts=self.servers, timeout=5)
            try:
                client.start(timeout=5)
                client.create(f"/up-{secrets.token_hex(4)}", b"")  # a write through the quorum
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ZooKeeper did not come up; see {self.dir}") from None
                time.sleep(0.5)
            finally:
                client.stop()
                client.close()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def one_run(servers: str, clients: int, kind: str, duration: float, warmup: float) -> dict:
    from kazoo.client import KazooClient

    conns = [KazooClient(hosts=servers, timeout=10) for _ in range(clients)]
    for c in conns:
        c.start(timeout=30)
    root = f"/zk-bench-{secrets.token_hex(4)}"
    value = b"x" * 100
    conns[0].create(root, b"")
    conns[0].create(f"{root}/e", b"")
    for i, c in enumerate(conns):
        c.create(f"{root}/c{i}", value)
    locks = [c.Lock(f"{root}/lock", f"c{i}") for i, c in enumerate(conns)]
    draw = random.Random()

    def step(i: int) -> None:
        c = conns[i]
        if kind == "write" or (kind == "mixed" and draw.random() >= 0.9):
            c.set(f"{root}/c{i}", value)
        elif kind in ("read", "mixed"):
            c.get(f"{root}/c{i}")
        elif kind == "lock":
            locks[i].acquire()
            locks[i].release()
        else:
            c.create(f"{root}/e/n-", value, ephemeral=True, sequence=True)

    doc = _threads(clients, step, duration, warmup)
    for c in conns:
        c.stop()
        c.close()
    janitor = KazooClient(hosts=servers, timeout=10)
    janitor.start(timeout=30)
    janitor.delete(root, recursive=True)
    janitor.stop()
    janitor.close()
    return doc


def _threads(
    clients: int, step: Callable[[int], None], duration: float, warmup: float
) -> dict[str, Any]:
    """Each client a thread looping ``step(i)``; latencies of what started after the warm-up."""
    samples: list[float] = []
    errors = [0]
    guard = threading.Lock()
    begin = time.perf_counter() + warmup
    stop = begin + duration

    def loop(i: int) -> None:
        mine: list[float] = []
        clock = time.perf_counter
        while clock() < stop:
            sent = clock()
            try:
                step(i)
            except Exception:
                if sent >= begin:
                    with guard:
                        errors[0] += 1
                continue
            if sent >= begin:
                mine.append(clock() - sent)
        with guard:
            samples.extend(mine)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = summary(samples, time.perf_counter() - begin)
    doc["errors"] = errors[0]
    return doc


def measure(
    runs: int,
    duration: float,
    warmup: float,
    median_of: Callable[[list[dict[str, Any]]], dict[str, Any]],
    wanted: set[str] | None,
) -> dict[str, Any]:
    ensemble = Ensemble()
    figures: dict[str, Any] = {}
    try:
        ensemble.start()

        def run(clients: int, kind: str) -> dict[str, Any]:
            return one_run(ensemble.servers, clients, kind, duration, warmup)

        figures = run_figures(FIGURES, runs, run, median_of, wanted)
    finally:
        ensemble.stop()
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "zookeeper"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    how = (
        f"ZooKeeper {version or '(version unknown)'} (Debian), one 3-node ensemble on 127.0.0.1 "
        "for all figures, default settings (forceSync=yes); clients through kazoo, one "
        "thread and one session each. Not measured: "
        + "; ".join(f"{k}: {why}" for k, why in NOT_MEASURED.items())
        + "."
    )
    return {"figures": figures, "how": how}
