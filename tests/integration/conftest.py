"""Real clusters of real node processes, started and stopped through the installed ``paxctl``.

A cluster lives in a temporary directory and on a base port whose client ports (BASE+1..+N) and
peer ports (BASE+101..+100+N) were all free on 127.0.0.1. Whatever a test does, teardown runs
``paxctl cluster down --dir DIR --grace 2``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from paxctl.cli.cluster_nodes import process_alive
from paxctl.client import ClientError, SyncClient

HOST = "127.0.0.1"
PAXCTL = shutil.which("paxctl")
T = TypeVar("T")

_used_bases: set[int] = set()


# ------------------------------------------------------------------ plain helpers


def paxctl_command(*args: str) -> list[str]:
    return [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]


def run_paxctl(
    *args: str, cwd: Path | str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``paxctl`` as a user would, in ``cwd``, with no $PAXCTL_SERVERS."""
    env = {k: v for k, v in os.environ.items() if k != "PAXCTL_SERVERS"}
    return subprocess.run(
        paxctl_command(*args),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def find_base_port(nodes: int = 3) -> int:
    """A base port whose client and peer ports are all free (below the ephemeral range)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(10_000, 32_000 - 100 - nodes)
        if base in _used_bases:
            continue
        ports = [base + i for i in range(1, nodes + 1)] + [
            base + 100 + i for i in range(1, nodes + 1)
        ]
        if all(port_is_free(p) for p in ports):
            _used_bases.add(base)
            return base
    raise RuntimeError("no free base port found")


pid_alive = process_alive


# ------------------------------------------------------------------ a running cluster


class Cluster:
    def __init__(self, cwd: Path, directory: Path, base_port: int, nodes: int = 3) -> None:
        self.cwd = cwd
        self.directory = directory
        self.base_port = base_port
        self.ids = list(range(1, nodes + 1))

    # addresses and files

    def client_port(self, node_id: int) -> int:
        return self.base_port + node_id

    def peer_port(self, node_id: int) -> int:
        return self.base_port + 100 + node_id

    @property
    def client_ports(self) -> list[int]:
        return [self.client_port(i) for i in self.ids]

    @property
    def peer_ports(self) -> list[int]:
        return [self.peer_port(i) for i in self.ids]

    def node_of_port(self, port: int) -> int:
        return port - self.base_port - (100 if port - self.base_port > 100 else 0)

    @property
    def cluster_id(self) -> bytes:
        doc = json.loads((self.directory / "cluster.json").read_text())
        return bytes.fromhex(doc["cluster_id"])

    def log_path(self, node_id: int) -> Path:
        return self.directory / f"node-{node_id}.log"

    # the command line

    def paxctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_paxctl(*args, cwd=self.cwd, timeout=timeout)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.paxctl(
            "cluster", "up", "--dir", str(self.directory), "--base-port", str(self.base_port),
            "--nodes", str(len(self.ids)), "--wait", "15",
        )  # fmt: skip

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.paxctl("cluster", "down", "--dir", str(self.directory), "--grace", "2")

    def status(self) -> dict[str, Any]:
        done = self.paxctl("cluster", "status", "--dir", str(self.directory), "--json")
        assert done.stdout.strip(), f"no status (exit {done.returncode}): {done.stderr}"
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def healthy_status(self) -> dict[str, Any] | None:
        doc = self.status()
        nodes = doc["nodes"]
        alive = all(n["alive"] and n["pid"] for n in nodes) and len(nodes) == len(self.ids)
        leaders = [n for n in nodes if n["role"] == "leader"]
        return doc if alive and len(leaders) == 1 and doc["quorum"] else None

    def wait_healthy(self, timeout: float = 10) -> dict[str, Any]:
        return wait_until(self.healthy_status, timeout, 0.2, "every node alive and one leader")

    def leader(self) -> int:
        doc = self.wait_healthy()
        return next(int(n["id"]) for n in doc["nodes"] if n["role"] == "leader")

    def assert_processes_alive(self) -> None:
        for node_id in self.ids:
            pid = int((self.directory / f"node-{node_id}.pid").read_text())
            assert pid_alive(pid), (
                f"node {node_id} (pid {pid}) died; log:\n{self.log_tail(node_id)}"
            )

    def assert_reads_and_writes_work(self, timeout: float = 8) -> None:
        """A write through each node, then a linearizable read of every write through each node."""
        token = uuid.uuid4().hex[:12]
        written = {}
        for node_id in self.ids:
            path, data = f"/probe-{token}-{node_id}", f"written via {node_id}".encode()
            with SyncClient([(HOST, self.client_port(node_id))], timeout=timeout) as c:
                try:
                    assert c.create(path, data) == path
                except ClientError as exc:
                    raise AssertionError(f"write via node {node_id} failed: {exc!r}") from exc
            written[path] = data
        for node_id in self.ids:
            with SyncClient([(HOST, self.client_port(node_id))], timeout=timeout) as c:
                for path, data in written.items():
                    try:
                        assert c.get(path)[0] == data, f"node {node_id} read a stale {path}"
                    except ClientError as exc:
                        raise AssertionError(f"read via node {node_id}: {exc!r}") from exc

    def assert_healthy(self) -> None:
        self.assert_processes_alive()
        self.wait_healthy()
        self.assert_reads_and_writes_work()

    # logs

    def log_marks(self) -> dict[int, int]:
        return {i: self.log_path(i).stat().st_size for i in self.ids}

    def log_since(self, marks: dict[int, int], node_id: int) -> str:
        with open(self.log_path(node_id), "rb") as f:
            f.seek(marks[node_id])
            return f.read().decode(errors="replace")

    def wait_log(self, marks: dict[int, int], node_id: int, needle: str, count: int = 1) -> None:
        wait_until(
            lambda: self.log_since(marks, node_id).count(needle) >= count,
            timeout=5,
            what=f"{count}x {needle!r} in node {node_id}'s log",
        )

    def log_tail(self, node_id: int, lines: int = 30) -> str:
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def assert_no_tracebacks(self, marks: dict[int, int]) -> None:
        for node_id in self.ids:
            text = self.log_since(marks, node_id)
            assert "Traceback" not in text and " ERROR " not in text, (
                f"node {node_id} logged an error:\n{text[-3000:]}"
            )


@contextlib.contextmanager
def running_cluster(cwd: Path, nodes: int = 3) -> Iterator[Cluster]:
    """Start a cluster in ``cwd/cluster`` (retrying on another base port if one was taken)."""
    cluster: Cluster | None = None
    try:
        for attempt in range(3):
            directory = cwd / f"cluster-{attempt}"
            cluster = Cluster(cwd, directory, find_base_port(nodes), nodes)
            done = cluster.up()
            if done.returncode == 0:
                break
            logs = "\n".join(cluster.log_tail(i) for i in cluster.ids)
            cluster.down()
            # `cluster up` refuses a port taken (or another cluster's) before starting anything;
            # a node that loses the race to bind one dies with "address already in use".
            refused = done.returncode == 2 and "nothing was started" in done.stderr
            if "address already in use" not in logs.lower() and not refused:
                raise RuntimeError(f"cluster up failed ({done.returncode}): {done.stderr}\n{logs}")
        else:
            raise RuntimeError("cluster up failed three times: ports taken")
        yield cluster
    finally:
        if cluster is not None and (cluster.directory / "cluster.json").exists():
            cluster.down()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster shared by a module's tests (each must leave it healthy)."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-node cluster of this test's own, for tests that may leave it broken."""
    with running_cluster(tmp_path) as c:
        yield c


@pytest.fixture
def user_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty directory to work in as a new user; any cluster started in it is stopped."""
    work = tmp_path / "work"
    work.mkdir()
    try:
        yield work
    finally:
        if (work / ".paxctl" / "cluster.json").exists():
            run_paxctl("cluster", "down", "--dir", ".paxctl", "--grace", "2", cwd=work)


@pytest.fixture
def free_base_port() -> int:
    return find_base_port()


@pytest.fixture
def paxctl() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``paxctl(*args, cwd=DIR)``: run the installed command."""
    return run_paxctl


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    return wait_until


@pytest.fixture(name="pid_alive")
def pid_alive_fixture() -> Callable[[int], bool]:
    return pid_alive
