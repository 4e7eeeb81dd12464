"""ZooKeeper and etcd beside paxctl, for benchmarks/results.py: each measured only when it is
installed; otherwise a sentence saying why not, which RESULTS.md prints."""

from __future__ import annotations

import shutil
from typing import Any


def zookeeper_missing() -> str | None:
    if not (shutil.which("zkServer.sh") or shutil.which("/usr/share/zookeeper/bin/zkServer.sh")):
        return "ZooKeeper is not installed here (Debian's `zookeeper` package)"
    try:
        import kazoo  # noqa: F401
    except ImportError:
        return "the kazoo client is not installed (`pip install kazoo`)"
    return None


def etcd_missing() -> str | None:
    if not shutil.which("etcd"):
        return "etcd is not installed here (Debian's `etcd-server` package)"
    return None


def measure_all(runs: int, duration: float, warmup: float) -> dict[str, Any]:
    """Figures by system, or the reason a system was skipped."""
    found: dict[str, Any] = {}
    for name, missing in (("ZooKeeper", zookeeper_missing), ("etcd", etcd_missing)):
        reason = missing()
        found[name] = reason if reason else "installed, but no driver for it in benchmarks/ yet"
    return found
