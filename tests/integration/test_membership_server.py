"""Membership changes on real processes, through the client library (issue 15).

A 4th node is added to a 3-node cluster with ``SyncClient.reconfigure`` and started with
``paxctl node start --join``: it catches up (its applied index reaches the leader's), the
leader promotes it to voter on its own, it serves reads and writes, and it is removed again.
A change with a wrong secret is refused. A node restarted on an emptied data directory with
``--join`` under its old voter id learns but never votes: with one other voter down, the
cluster has no quorum.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from local_cluster import LocalCluster, wait_until
from paxctl_procs import Proc, paxctl_argv

from paxctl.client import SyncClient
from paxctl.server.secret import load_secret
from paxctl.statemachine.errors import AuthFailed

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_doc(cluster: LocalCluster) -> dict[str, Any]:
    with open(os.path.join(cluster.dir, "cluster.json")) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _seeds(cluster: LocalCluster) -> str:
    return ",".join(f"{i}=127.0.0.1:{cluster.base + 100 + i}" for i in range(1, 4))


def _join(cluster: LocalCluster, node: int, data: str, peer: int, client: int) -> Proc:
    argv = paxctl_argv(
        "node", "start", "--join",
        "--id", str(node),
        "--data", data,
        "--peers", _seeds(cluster),
        "--listen", f"127.0.0.1:{peer}",
        "--client", f"127.0.0.1:{client}",
        "--cluster-id", _cluster_doc(cluster)["cluster_id"],
        "--secret-file", os.path.join(cluster.dir, "cluster.secret"),
    )  # fmt: skip
    return Proc(argv, cluster.servers)


def _status(port: int) -> dict[str, Any] | None:
    try:
        with SyncClient([("127.0.0.1", port)], timeout=1.0) as c:
            st: dict[str, Any] = c.status()
            return st
    except Exception:
        return None


def _member(config: dict[str, Any], node: int) -> dict[str, Any] | None:
    return next((m for m in config["members"] if m["id"] == node), None)


def _settled(c: SyncClient, n: int) -> dict[str, Any]:
    """Write until the change in flight governs (a change waits ALPHA slots to do so)."""

    def done() -> dict[str, Any] | None:
        c.create(f"/fill/{n}-", b"", sequential=True)
        config = c.members()
        return None if config["in_flight"] else config

    result: dict[str, Any] = wait_until(done, 30, "the change in flight to govern")
    return result


def test_a_learner_joins_catches_up_is_promoted_and_leaves(tmp_path: Path) -> None:
    cluster = LocalCluster(str(tmp_path / "c"), nodes=3)
    secret = load_secret(os.path.join(cluster.dir, "cluster.secret"))
    peer, client = _free_port(), _free_port()
    joiner: Proc | None = None
    try:
        with cluster.client(timeout=10) as c:
            c.create("/data", b"")
            c.create("/fill", b"")
            for i in range(200):
                c.create(f"/data/k{i}", b"v%d" % i)
            before = c.members()
            assert [m["id"] for m in before["members"]] == [1, 2, 3]
            with pytest.raises(AuthFailed):
                c.reconfigure(
                    "add", 4, secret=bytes(32), peer=f"127.0.0.1:{peer}",
                    client=f"127.0.0.1:{client}",
                )  # fmt: skip
            assert [m["id"] for m in c.members()["members"]] == [1, 2, 3]
            added = c.reconfigure(
                "add", 4, secret=secret, peer=f"127.0.0.1:{peer}", client=f"127.0.0.1:{client}"
            )
            member = _member(added, 4)
            assert member == {
                "id": 4,
                "voter": False,
                "peer": f"127.0.0.1:{peer}",
                "client": f"127.0.0.1:{client}",
                "promote": True,
                "replaces": 0,
            }
            assert added["epoch"] > before["epoch"] and added["next_id"] == 5

            joiner = _join(cluster, 4, str(tmp_path / "node-4"), peer, client)

            def caught_up() -> bool:
                mine, lead = _status(client), cluster.node_status(cluster.leader()["id"])
                return bool(mine and lead and mine["applied"] >= lead["applied"] > 0)

            wait_until(caught_up, 60, "the joiner to catch up with the leader")

            def promoted() -> dict[str, Any] | None:
                c.create("/fill/p-", b"", sequential=True)  # slots, so the promotion governs
                m = _member(c.members(), 4)
                return m if m is not None and m["voter"] else None

            wait_until(promoted, 60, "the leader to promote node 4")
            with SyncClient([("127.0.0.1", client)], timeout=10) as four:
                data, _ = four.get("/data/k199")
                assert data == b"v199"  # a linearizable read served by the new voter
                four.create("/from-4", b"")  # a write through it
            assert c.get("/from-4")[0] == b""

            _settled(c, 1)
            removed = c.reconfigure("remove", 4, secret=secret)
            assert _member(removed, 4) is None
            after = _settled(c, 2)
            assert [(m["id"], m["voter"]) for m in after["members"]] == [
                (1, True),
                (2, True),
                (3, True),
            ]
            c.create("/after", b"")  # the three voters go on
            # Node 4 learns that every slot it was a member for is decided (it asks for the
            # log if the leader stopped writing to it first), says so, and stops: exit 0.
            assert joiner.wait(30) == 0
            assert "node 4 was removed from the cluster" in joiner.stderr()
    finally:
        if joiner is not None:
            joiner.stop()
        cluster.down()


def test_a_voter_restarted_empty_under_its_old_id_learns_but_never_votes(tmp_path: Path) -> None:
    cluster = LocalCluster(str(tmp_path / "c"), nodes=3)
    node3: Proc | None = None
    try:
        with cluster.client(timeout=10) as c:
            c.create("/before", b"x")
        cluster.kill(3)
        data = os.path.join(cluster.dir, "node-3")
        assert os.path.isdir(data)
        shutil.rmtree(data)
        node3 = _join(cluster, 3, data, cluster.base + 103, cluster.base + 3)
        wait_until(lambda: "it will NOT vote" in node3.stderr(), 60, "node 3's warning")
        assert node3.stderr().count("it will NOT vote") == 1

        def learned() -> bool:
            st = _status(cluster.base + 3)
            return bool(st and st["applied"] > 0)

        wait_until(learned, 30, "node 3 to learn the log")
        # Node 1 down: node 2 and the emptied node 3 would be a majority if node 3 voted.
        cluster.kill(1)
        with SyncClient([cluster.address(2)], timeout=4) as c:
            with pytest.raises(Exception) as caught:
                c.create("/without-quorum", b"")
            assert type(caught.value).__name__ in ("Unavailable", "Indeterminate")
    finally:
        if node3 is not None:
            node3.stop()
        cluster.down()
