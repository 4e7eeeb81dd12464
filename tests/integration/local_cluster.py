"""Real paxctl processes for tests: a local cluster driven through the installed command."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from paxctl.cli.cluster_nodes import process_alive
from paxctl.client import SyncClient

PAXCTL = shutil.which("paxctl")


def paxctl(
    *args: str, cwd: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    cmd = [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"paxctl {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def free_base_port(nodes: int) -> int:
    """A base port whose client (base+id) and peer (base+100+id) ports are all free."""
    for _ in range(200):
        # below the kernel's ephemeral range (32768+), where clients' own ports come from
        base = random.randrange(10_000, 32_000 - 100 - nodes)
        ports = [base + i for i in range(1, nodes + 1)] + [
            base + 100 + i for i in range(1, nodes + 1)
        ]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LocalCluster:
    def __init__(
        self,
        directory: str,
        nodes: int = 3,
        snapshot_every: int = 5000,
        node_args: tuple[str, ...] = (),
    ) -> None:
        self.dir = directory
        self.nodes = nodes
        for attempt in range(3):
            # A port found free can still be taken before a node binds it; `up` then keeps
            # nothing but the logs, and another base is tried.
            self.base = free_base_port(nodes)
            done = paxctl(
                "cluster",
                "up",
                "--dir",
                directory,
                "--nodes",
                str(nodes),
                "--base-port",
                str(self.base),
                "--snapshot-every",
                str(snapshot_every),
                *(("--", *node_args) if node_args else ()),
                check=attempt == 2,
            )
            if done.returncode == 0:
                return
            if "in use" not in done.stderr:
                raise AssertionError(f"paxctl cluster up exited {done.returncode}:\n{done.stderr}")

    def address(self, node_id: int) -> tuple[str, int]:
        return ("127.0.0.1", self.base + node_id)

    @property
    def servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.base + i}" for i in range(1, self.nodes + 1))

    def client(self, node_id: int | None = None, timeout: float = 10.0) -> SyncClient:
        if node_id is None:
            return SyncClient(self.servers, timeout=timeout)
        return SyncClient([self.address(node_id)], timeout=timeout)

    def status(self) -> dict[str, Any]:
        done = paxctl("cluster", "status", "--dir", self.dir, "--json", check=False)
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def node_status(self, node_id: int) -> dict[str, Any] | None:
        try:
            with self.client(node_id, timeout=1.0) as c:
                st: dict[str, Any] = c.status()
                return st
        except Exception:
            return None

    def leader(self) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            leaders = [n for n in self.status()["nodes"] if n["role"] == "leader"]
            return leaders[0] if len(leaders) == 1 else None

        found: dict[str, Any] = wait_until(find, 20, "a single leader")
        return found

    def pid(self, node_id: int) -> int:
        with open(os.path.join(self.dir, f"node-{node_id}.pid")) as f:
            return int(f.read())

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        pid = self.pid(node_id)
        os.kill(pid, sig)
        wait_until(lambda: not process_alive(pid), 10, f"node {node_id} (pid {pid}) to die")

    def start(self, node_id: int) -> None:
        paxctl("cluster", "start", str(node_id), "--dir", self.dir)

    def down(self) -> None:
        paxctl("cluster", "down", "--dir", self.dir, "--grace", "2", check=False)
