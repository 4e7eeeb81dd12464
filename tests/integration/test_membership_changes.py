"""Changing a real cluster's members while it serves: `paxctl cluster add/remove/replace`
against node processes started by `paxctl cluster up`, under a write load from several clients.

The load's promise is the issue's acceptance: no acknowledged write is lost (every one is read
back from the final cluster), and writes go on, with no pause between two acknowledged writes
longer than ``MAX_GAP`` (the bound README's "Changing the cluster" documents). Learners serve
reads and watches and never count: with the learner up and two of three voters down, a write
fails (exit 5); with the learner down and the voters up, writes go on.
"""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, find_base_port, wait_until
from paxctl_procs import paxctl_proc, spawned

from paxctl.client import ClientError, SyncClient

HOST = "127.0.0.1"
#: The longest pause between two acknowledged writes a change may cause (README: "Changing
#: the cluster"). A change itself costs a few slots; the bound covers a leader's removal
#: (handover, a new leader's phase 1) on a loaded 2-core machine.
MAX_GAP = 10.0
CLIENTS = 3


class WriteLoad:
    """``CLIENTS`` threads, each with its own SyncClient, creating znodes with unique values;
    every acknowledged write is recorded with the time it was acknowledged."""

    def __init__(self, servers: str) -> None:
        self.servers = servers
        self.stop = threading.Event()
        self.acked: list[tuple[float, str, bytes]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.token = uuid.uuid4().hex[:8]
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(CLIENTS)]

    def _run(self, k: int) -> None:
        i = 0
        with SyncClient(self.servers, timeout=8.0) as c:
            while not self.stop.is_set():
                i += 1
                path, value = f"/load-{self.token}-{k}-{i}", f"{k}:{i}:{uuid.uuid4().hex}".encode()
                try:
                    c.create(path, value)
                except ClientError as exc:  # unavailable or indeterminate: not acknowledged
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.acked.append((time.monotonic(), path, value))

    def __enter__(self) -> WriteLoad:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        wait_until(lambda: len(self.acked) >= 20, 15, what="the load's first writes")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def longest_gap(self) -> float:
        times = sorted(t for t, _, _ in self.acked)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def check(self, servers: str) -> None:
        """Every acknowledged write reads back from ``servers`` (linearizably), and writes
        never paused longer than MAX_GAP."""
        assert len(self.acked) > 100, f"too little load: {len(self.acked)} writes"
        with SyncClient(servers, timeout=10.0) as c:
            c.sync()
            lost = []
            for _, path, value in self.acked:
                try:
                    data = c.get(path)[0]
                except ClientError as exc:
                    lost.append(f"{path}: {exc!r}")
                    continue
                if data != value:
                    lost.append(f"{path}: read {data!r}, acked {value!r}")
        assert not lost, f"{len(lost)} of {len(self.acked)} acked writes lost: {lost[:5]}"
        gap = self.longest_gap()
        print(
            f"{len(self.acked)} acked writes, {len(self.failures)} failed, longest gap {gap:.2f}s"
        )
        assert gap < MAX_GAP, f"writes paused {gap:.1f}s (bound {MAX_GAP}s)"


@contextmanager
def cluster_of(tmp_path: Path, nodes: int) -> Iterator[Cluster]:
    """A cluster of ``nodes`` started by `paxctl cluster up`, on a base port whose ports are
    free for the nodes added later too (ids up to 8)."""
    cluster = Cluster(tmp_path, tmp_path / "cluster", find_base_port(8), nodes)
    try:
        done = cluster.up()
        assert done.returncode == 0, done.stderr
        yield cluster
    finally:
        cluster.down()


def change(cluster: Cluster, *args: str, timeout: float = 80) -> dict[str, Any]:
    done = cluster.paxctl(
        "cluster", *args, "--dir", str(cluster.directory), "--wait", "60", "-o", "json",
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, f"cluster {args}: exit {done.returncode}: {done.stderr}"
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def servers_of(cluster: Cluster, ids: list[int]) -> str:
    return ",".join(f"{HOST}:{cluster.client_port(i)}" for i in ids)


def cluster_json(cluster: Cluster) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((cluster.directory / "cluster.json").read_text())
    return doc


def test_grow_three_to_five_under_load(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 3) as cluster, WriteLoad(servers_of(cluster, [1, 2, 3])) as load:
        for new in (4, 5):
            doc = change(cluster, "add")
            assert doc["id"] == new
            assert doc["configuration"]["voters"] == list(range(1, new + 1))
        cluster.ids = [1, 2, 3, 4, 5]
        status = cluster.wait_healthy(20)
        assert status["configuration"]["voters"] == [1, 2, 3, 4, 5]
        assert status["warnings"] == []
        assert [n["member"] for n in status["nodes"]] == ["voter"] * 5
        time.sleep(1.0)  # the load goes on a moment on five voters
        load.__exit__()
        load.check(servers_of(cluster, [4, 5]))  # read back through the new nodes
        joined = [n for n in cluster_json(cluster)["nodes"] if n.get("join")]
        assert [(n["id"], n["client_port"]) for n in joined] == [
            (4, cluster.client_port(4)),
            (5, cluster.client_port(5)),
        ]


def test_shrink_five_to_three_removing_the_leader_under_load(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 5) as cluster:
        leader = cluster.leader()
        other = next(i for i in (5, 4, 3) if i != leader)
        keep = sorted(set(cluster.ids) - {leader, other})
        with WriteLoad(servers_of(cluster, cluster.ids)) as load:
            change(cluster, "remove", str(leader))
            change(cluster, "remove", str(other))
            cluster.ids = keep
            status = cluster.wait_healthy(20)
            assert status["configuration"]["voters"] == keep
            time.sleep(1.0)
        load.check(servers_of(cluster, keep))
        removed = {n["id"] for n in cluster_json(cluster)["nodes"] if n.get("removed")}
        assert removed == {leader, other}
        for node in (leader, other):  # their processes are gone
            assert not (cluster.directory / f"node-{node}.pid").exists()


def test_replace_a_node_whose_data_was_deleted_under_load(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 3) as cluster, WriteLoad(servers_of(cluster, [1, 2, 3])) as load:
        victim = next(i for i in cluster.ids if i != cluster.leader())
        stopped = cluster.paxctl("cluster", "stop", str(victim), "--dir", str(cluster.directory))
        assert stopped.returncode == 0, stopped.stderr
        shutil.rmtree(cluster.directory / f"node-{victim}")
        status = cluster.status()
        assert any(f"node {victim} is down" in w for w in status["warnings"]), status
        doc = change(cluster, "replace", str(victim))
        assert doc["id"] == 4 and doc["replaced"] == victim
        cluster.ids = sorted({*cluster.ids, 4} - {victim})
        status = cluster.wait_healthy(20)
        assert status["configuration"]["voters"] == cluster.ids
        assert status["warnings"] == []
        time.sleep(1.0)
        load.__exit__()
        load.check(servers_of(cluster, [4]))
        members = {n["id"]: n for n in cluster_json(cluster)["nodes"]}
        assert members[victim].get("removed") is True and members[4].get("join") is True


def test_a_learner_serves_reads_and_watches_and_never_counts(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 3) as cluster:
        doc = change(cluster, "add", "--learner")
        learner = doc["id"]
        assert doc["configuration"]["learners"] == [learner]
        at_learner = servers_of(cluster, [learner])
        with SyncClient(servers_of(cluster, [1, 2, 3]), timeout=10) as c:
            c.create("/seen", b"before")
        # reads: linearizable and local, through the learner
        got = cluster.paxctl("-s", at_learner, "get", "/seen")
        assert got.returncode == 0 and got.stdout.strip() == "before", got.stderr
        got = cluster.paxctl("-s", at_learner, "get", "--local", "/seen")
        assert got.returncode == 0 and got.stdout.strip() == "before", got.stderr
        # a watch through the learner fires on a write through a voter
        with spawned(paxctl_proc(at_learner, "watch", "/seen", "--once")) as (proc,):
            with SyncClient(servers_of(cluster, [1]), timeout=10) as c:
                wait_until(
                    lambda: c.set("/seen", b"after") and proc.popen.poll() is not None,
                    15,
                    what="the learner's watch to fire",
                )
            assert proc.wait() == 0, proc.stderr()
            assert proc.line().split("\t")[:2] == ["changed", "/seen"]
        # two of three voters down: the learner is no quorum, a write fails with exit 5
        # (once the voter left has no quorum it stops leading: check-quorum)
        for node in (2, 3):
            cluster.paxctl("cluster", "stop", str(node), "--dir", str(cluster.directory))

        def nobody_leads() -> bool:
            roles = [n["role"] for n in cluster.status()["nodes"]]
            return "leader" not in roles and roles.count("down") == 2

        wait_until(nobody_leads, 20, 0.2, "the voter left to stop leading")
        # A linearizable read through the learner has no quorum to confirm it: exit 5. A write
        # is held for a leader for a while, then refused as not done (the learner knows it never
        # went out): exit 5 as well, not "outcome unknown".
        read = cluster.paxctl("-s", at_learner, "get", "/seen", "--timeout", "3")
        assert read.returncode == 5, (read.returncode, read.stderr)
        failed = cluster.paxctl("-s", at_learner, "set", "/seen", "x", "--timeout", "3")
        assert failed.returncode == 5, (failed.returncode, failed.stderr)
        assert "no leader" in failed.stderr, failed.stderr
        status = cluster.paxctl("cluster", "status", "--dir", str(cluster.directory), "--json")
        assert status.returncode == 5
        # voters back, learner down: writes go on as before
        for node in (2, 3):
            started = cluster.paxctl("cluster", "start", str(node), "--dir", str(cluster.directory))
            assert started.returncode == 0, started.stderr
        cluster.paxctl("cluster", "stop", str(learner), "--dir", str(cluster.directory))
        done = cluster.paxctl("-s", servers_of(cluster, [1, 2, 3]), "set", "/seen", "y")
        assert done.returncode == 0, done.stderr
        status_doc = cluster.status()
        assert status_doc["quorum"] and status_doc["warnings"] == []


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """Each test is meant to stay under 90 s on a 2-core machine."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 90, f"took {time.monotonic() - started:.0f}s"
