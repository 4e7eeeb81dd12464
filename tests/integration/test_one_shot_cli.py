"""One-shot CLI writes on a real local cluster: `paxctl set` is one consensus round, `paxctl
put` creates or sets in one request, and an ephemeral still lives on a session.

Rounds are counted, not timed: the slots a node has applied, read after a ``sync`` (which
waits until that node applied everything chosen before it), before and after one command.
"""

from __future__ import annotations

import json

import pytest
from local_cluster import LocalCluster, paxctl

from paxctl.client import SyncClient

#: Slots between digest audits (the server's default ``digest_every``): the leader then
#: proposes an audit command of its own, one more slot that is no client's.
AUDIT_EVERY = 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("oneshot")))
    try:
        yield c
    finally:
        c.down()


def applied_slot(client: SyncClient) -> int:
    client.sync()
    return int(client.status()["applied"])


def clear_of_audits(client: SyncClient, room: int) -> int:
    """Write until the next ``room`` slots hold no digest audit; the applied slot then."""
    slot = applied_slot(client)
    while AUDIT_EVERY - slot % AUDIT_EVERY <= room:
        client.put("/filler", b"")
        slot = applied_slot(client)
    return slot


def test_a_set_is_one_consensus_round_where_a_session_costs_three(cluster):
    servers = ("-s", cluster.servers)
    # One node, so the slots counted are one node's: a reading client opens no session.
    with SyncClient([cluster.address(1)], timeout=10, one_shot=True) as reader:
        reader.put("/k", b"0")
        before = clear_of_audits(reader, 4)
        done = paxctl("-o", "json", "set", "/k", "one", "--stat", *servers)
        after = applied_slot(reader)
        assert after - before == 1, (before, after)
        stat = json.loads(done.stdout)["stat"]
        assert stat["version"] == 1 and stat["mzxid"] >> 16 == after
        assert reader.get("/k")[0] == b"one" and reader.sessions() == []
        # The same write through a session (what `set` did before): open, write, close.
        before = clear_of_audits(reader, 4)
        with SyncClient(cluster.servers, timeout=10) as writer:
            writer.set("/k", b"two")
        assert applied_slot(reader) - before == 3


def test_put_creates_then_sets_and_set_still_refuses_a_missing_node(cluster):
    servers = ("-s", cluster.servers)
    made = paxctl("-o", "json", "put", "/p", "first", *servers)
    assert json.loads(made.stdout)["stat"]["version"] == 0
    changed = paxctl("-o", "json", "put", "/p", "second", *servers)
    assert json.loads(changed.stdout)["stat"]["version"] == 1
    assert paxctl("get", "/p", *servers).stdout == "second"
    missing = paxctl("set", "/nowhere", "x", *servers, check=False)
    assert missing.returncode == 3 and "NoNode" in missing.stderr
    orphan = paxctl("put", "/no/parent", "x", *servers, check=False)
    assert orphan.returncode == 3 and "NoNode" in orphan.stderr


def test_one_shot_creates_deletes_and_multis_need_no_session(cluster):
    servers = ("-s", cluster.servers)
    paxctl("create", "/seq", *servers)
    made = paxctl("create", "/seq/q-", "--sequential", *servers).stdout.strip()
    assert made == "/seq/q-0000000000"
    paxctl("create", "/tree/a/b", "--parents", *servers)
    paxctl("rm", "-r", "/tree", *servers)
    with cluster.client() as c:
        assert c.exists("/tree") is None and c.sessions() == []


def test_a_one_shot_client_still_opens_a_session_for_an_ephemeral(cluster):
    with SyncClient(cluster.servers, timeout=10, one_shot=True) as c:
        c.put("/plain", b"no session")
        assert c.session_id is None
        c.create("/eph", b"", ephemeral=True)
        session = c.session_id
        assert session is not None and c.ephemerals() == ["/eph"]
        c.put("/plain", b"in the session")  # once open, writes go through it
    with cluster.client() as c:
        assert c.exists("/eph") is None and c.get("/plain")[0] == b"in the session"
