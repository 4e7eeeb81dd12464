"""A parent with so many children that their stats do not fit in one 4 MiB reply.

The node says so at once (DataTooLarge) instead of dropping the reply, and the commands that
need every child's stat (ls -l, tree, rm -r, export) ask for the names and then the stats.
"""

from __future__ import annotations

import json
import time

import pytest

from paxctl.client import SyncClient
from paxctl.statemachine.errors import DataTooLarge
from paxctl.statemachine.ops import Create

pytestmark = pytest.mark.integration

#: Enough children that their stats (about 150 bytes each with the name) exceed 4 MiB.
CHILDREN = 32_000


def test_a_listing_too_large_for_one_reply_is_refused_at_once_then_read_in_pieces(cluster):
    servers = ",".join(f"127.0.0.1:{port}" for port in cluster.client_ports)
    with SyncClient(servers) as c:
        c.create("/wide", b"")
        for start in range(0, CHILDREN, 1000):
            c.multi([Create(f"/wide/c{i:05}", b"") for i in range(start, start + 1000)])
        began = time.monotonic()
        with pytest.raises(DataTooLarge, match="exceeds"):
            c.children("/wide", stats=True)
        assert time.monotonic() - began < 5  # an answer, not the client's 10 s timeout
        assert len(c.children("/wide")) == CHILDREN  # the names alone still fit

    listed = cluster.paxctl("ls", "-l", "/wide", "-o", "ndjson", "-s", servers, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == CHILDREN and all(r["stat"]["numChildren"] == 0 for r in rows)

    removed = cluster.paxctl("rm", "-r", "/wide", "-o", "json", "-s", servers, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert len(json.loads(removed.stdout)["deleted"]) == CHILDREN + 1
    with SyncClient(servers) as c:
        assert c.exists("/wide") is None
