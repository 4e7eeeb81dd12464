"""A real cluster whose leader is killed with SIGKILL: the followers notice the closed peer
connection (not an election timeout of silence), elect through pre-vote and phase 1, and the
clients carry on. No timing is asserted here (benchmarks/failover.py measures it); what is
checked is that the real shell wires the signal through and that nothing is lost."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from local_cluster import LocalCluster, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(str(tmp_path / "cluster"))
    try:
        yield c
    finally:
        c.down()


def test_the_followers_of_a_killed_leader_notice_its_closed_connection(cluster):
    old = cluster.leader()
    survivors = [i for i in range(1, cluster.nodes + 1) if i != old["id"]]
    with cluster.client(survivors[0], timeout=20) as c:  # a client of a follower
        c.create("/before", b"x")
        cluster.kill(old["id"])
        c.create("/after", b"y")  # forwarded to whichever node leads now
        assert c.get("/before")[0] == b"x"
    new = cluster.leader()
    assert new["id"] in survivors
    for i in survivors:
        status = wait_until(lambda i=i: cluster.node_status(i), 10, f"node {i}'s status")
        assert status["counters"].get("leader_links_lost", 0) >= 1, status["counters"]
    logs = "".join(Path(f).read_text() for f in glob.glob(os.path.join(cluster.dir, "*.log")))
    assert f"node {new['id']}: leader at ballot" in logs
