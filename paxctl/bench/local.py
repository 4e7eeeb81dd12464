"""A throwaway local cluster for ``paxctl bench``: ``paxctl cluster up`` in a temporary
directory on free loopback ports, and ``cluster down`` plus the directory's removal after.

It runs the real command in a child process (the same interpreter), so the nodes are exactly
what ``cluster up`` makes, peer authentication included, and their output stays out of ours.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from types import TracebackType


class ClusterFailed(Exception):
    """``cluster up`` did not bring the cluster up; the message has its own last line."""


def free_base_port(nodes: int, rng: random.Random | None = None) -> int:
    """A base port whose client (base+id) and peer (base+100+id) ports are free now, below the
    kernel's ephemeral range where the clients' own ports come from."""
    draw = rng or random.Random()
    for _ in range(200):
        base = draw.randrange(10_000, 32_000 - 100 - nodes)
        ports = [base + i for i in range(1, nodes + 1)]
        ports += [base + 100 + i for i in range(1, nodes + 1)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise ClusterFailed("found no free ports on 127.0.0.1")


def _paxctl(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paxctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class ThrowawayCluster:
    """``with ThrowawayCluster(3) as servers:`` a running cluster, gone afterwards (also after
    an error or Ctrl-C)."""

    def __init__(self, nodes: int = 3, note: Callable[[str], None] | None = None) -> None:
        self.nodes = nodes
        self.dir = ""
        self._note = note or (lambda _line: None)

    def __enter__(self) -> str:
        self.dir = tempfile.mkdtemp(prefix="paxctl-bench-")
        try:
            return self._up()
        except BaseException:
            self._remove()
            raise

    def _up(self) -> str:
        where = os.path.join(self.dir, "cluster")
        for attempt in range(3):
            # A port found free may be taken before a node binds it: `up` then keeps nothing
            # but the logs, and another base is tried.
            base = free_base_port(self.nodes)
            self._note(f"starting a local {self.nodes}-node cluster in {where} (ports {base}+)")
            done = _paxctl(
                "cluster",
                "up",
                "--dir",
                where,
                "--nodes",
                str(self.nodes),
                "--base-port",
                str(base),
                "-o",
                "json",
                timeout=120,
            )
            if done.returncode == 0:
                servers: str = json.loads(done.stdout)["servers"]
                return servers
            if "in use" not in done.stderr or attempt == 2:
                lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
                raise ClusterFailed(f"the local cluster did not start: {lines[-1]}")
        raise AssertionError("unreachable")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._note("stopping the local cluster")
        self._remove()

    def _remove(self) -> None:
        where = os.path.join(self.dir, "cluster")
        if os.path.exists(os.path.join(where, "cluster.json")):
            _paxctl("cluster", "down", "--dir", where, "--grace", "2", timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
