"""Fenced writes through the installed CLI: the holder's token works, a stale one exits 4."""

from __future__ import annotations

import asyncio

import pytest
from local_cluster import LocalCluster, paxctl

from paxctl.client import Client
from paxctl.statemachine.errors import FenceRejected


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("fence")))
    try:
        yield c
    finally:
        c.down()


def test_a_stale_fence_is_refused_and_changes_nothing(cluster):
    servers = ["-s", cluster.servers]

    async def scenario() -> None:
        holder = Client(cluster.servers)
        waiter = Client(cluster.servers)
        first = await holder.create(
            "/paxctl/locks/job/a-lock-", ephemeral=True, sequential=True, parents=True
        )
        second = await waiter.create("/paxctl/locks/job/b-lock-", ephemeral=True, sequential=True)
        t1 = (await holder.stat(first))["czxid"]
        t2 = (await waiter.stat(second))["czxid"]
        assert t2 > t1
        await holder.create("/guarded", b"start")

        ok = paxctl("set", "/guarded", "by-holder", "--fence", f"job:{t1}", *servers, check=False)
        assert ok.returncode == 0, ok.stderr
        early = paxctl(
            "set", "/guarded", "by-waiter", "--fence", f"job:{t2}", *servers, check=False
        )
        assert early.returncode == 4 and "FenceRejected" in early.stderr

        await holder.close()  # the holder's session ends: the lock passes to the waiter
        stale = paxctl("set", "/guarded", "stale", "--fence", f"job:{t1}", *servers, check=False)
        assert stale.returncode == 4, stale.stderr
        assert stale.stderr.count("\n") == 1 and "FenceRejected" in stale.stderr
        assert (await waiter.get("/guarded"))[0] == b"by-holder"
        await waiter.set("/guarded", b"by-new-holder", fence=("/paxctl/locks/job", t2))
        with pytest.raises(FenceRejected):
            await waiter.delete("/guarded", fence=("/paxctl/locks/job", t1))
        assert (await waiter.get("/guarded"))[0] == b"by-new-holder"
        await waiter.close()

    asyncio.run(scenario())


def test_a_malformed_fence_is_a_usage_error(cluster):
    for bad in ("job", "job:", ":12", "job:-1", "job:abc"):
        done = paxctl("set", "/x", "v", "--fence", bad, "-s", cluster.servers, check=False)
        assert done.returncode == 2, (bad, done.stderr)
