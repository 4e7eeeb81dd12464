"""ZooKeeper and etcd beside paxctl, for benchmarks/results.py.

Each is measured only when installed (Debian's ``zookeeper`` with the ``kazoo`` client from
PyPI; Debian's ``etcd-server``, driven through its v3 JSON gateway); otherwise RESULTS.md gets
a sentence saying why not. Each system runs as a 3-node cluster on 127.0.0.1 in a temporary
directory, started once for all its figures and removed afterwards, with its default
durability (ZooKeeper's forceSync, etcd's WAL fsync: both fsync before acknowledging a write).
The clients are in this process, as paxctl's are in ``paxctl bench``'s.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

ZK_SERVER = "/usr/share/zookeeper/bin/zkServer.sh"
ZK_JAR = "/usr/share/java/zookeeper.jar"


def zookeeper_missing() -> str | None:
    if not (shutil.which("zkServer.sh") or shutil.which(ZK_SERVER)) or not shutil.which("java"):
        return "ZooKeeper is not installed here (Debian's `zookeeper` package, and java)"
    try:
        import kazoo  # noqa: F401
    except ImportError:
        return "the kazoo client is not installed (`pip install kazoo`)"
    return None


def etcd_missing() -> str | None:
    if not shutil.which("etcd"):
        return "etcd is not installed here (Debian's `etcd-server` package)"
    return None


def measure_all(
    runs: int,
    duration: float,
    warmup: float,
    median_of: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    wanted: set[str] | None = None,
) -> dict[str, Any]:
    """Figures by system (``{"figures": {key: ...}, "how": ...}``), or why it was skipped."""
    found: dict[str, Any] = {}
    for name, missing, module in (
        ("ZooKeeper", zookeeper_missing, "zk_bench"),
        ("etcd", etcd_missing, "etcd_bench"),
    ):
        reason = missing()
        if reason or median_of is None:
            found[name] = reason or "not asked for"
            continue
        print(f"measuring {name}", file=sys.stderr, flush=True)
        driver = __import__(module)
        found[name] = driver.measure(runs, duration, warmup, median_of, wanted)
    return found


def run_figures(
    figures: dict[str, tuple[str, int, str]],
    runs: int,
    one_run: Callable[[int, str], dict[str, Any]],
    median_of: Callable[[list[dict[str, Any]]], dict[str, Any]],
    wanted: set[str] | None,
) -> dict[str, Any]:
    """Each figure (``key -> (what, clients, kind)``) ``runs`` times through ``one_run(clients,
    kind)``, with the load average before each run, and the median: what both drivers share."""
    out: dict[str, Any] = {}
    for key, (what, clients, kind) in figures.items():
        if wanted is not None and key not in wanted:
            continue
        docs = []
        for _ in range(runs):
            load = round(os.getloadavg()[0], 2)
            doc = one_run(clients, kind)
            doc["load_before"] = load
            docs.append(doc)
        out[key] = {"what": what, "runs": docs, "median": median_of(docs)}
    return out
