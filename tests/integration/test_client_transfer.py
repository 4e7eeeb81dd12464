"""Export, import and recursive delete used from Python (``paxctl.client.transfer`` and
``paxctl.client.subtree``), against a real cluster: what ``paxctl export``, ``import`` and
``rm -r`` do, without the command line and without printing anything."""

from __future__ import annotations

import uuid

import pytest
from conftest import HOST, Cluster

from paxctl.client import SyncClient
from paxctl.client.dump import Dump, DumpNode, parse_dump, render_dump
from paxctl.client.subtree import delete_tree, read_tree
from paxctl.client.transfer import Conflict, export_subtree, import_dump
from paxctl.statemachine.errors import NoNode

pytestmark = pytest.mark.integration


def servers(cluster: Cluster) -> str:
    return ",".join(f"{HOST}:{port}" for port in cluster.client_ports)


def test_a_subtree_exported_imported_elsewhere_and_deleted(cluster, capsys):
    root = f"/lib-{uuid.uuid4().hex[:8]}"
    with SyncClient(servers(cluster)) as c:
        c.create(f"{root}/app/config", b"v1", parents=True)
        c.create(f"{root}/app/config/db", b"\x00\x01")
        c.create(f"{root}/app/jobs", b"")

        progress: list[tuple[int, int | None]] = []
        exported = export_subtree(c, f"{root}/app", progress=lambda d, t: progress.append((d, t)))
        assert [n.path for n in exported.dump.nodes] == ["", "config", "config/db", "jobs"]
        assert progress[-1] == (4, 4)
        dump = parse_dump(render_dump(exported.dump), "memory")  # the file format round-trips
        assert dump == exported.dump

        planned = import_dump(c, dump, f"{root}/copy")
        assert [s.action for s in planned] == ["create"] * 4
        assert c.get(f"{root}/copy/config/db")[0] == b"\x00\x01"
        again = import_dump(c, dump, f"{root}/copy")  # an import run twice changes nothing
        assert [s.action for s in again] == ["unchanged"] * 4

        other = Dump(dump.root, dump.zxid, [DumpNode("", b"v1"), DumpNode("config", b"other")])
        with pytest.raises(Conflict):
            import_dump(c, other, f"{root}/copy")
        assert import_dump(c, other, f"{root}/copy", overwrite=True)[1].action == "update"

        deleted = delete_tree(c, root)
        assert deleted[-1] == root and len(deleted) == 1 + 4 + 4
        with pytest.raises(NoNode):
            read_tree(c, root)
    assert capsys.readouterr() == ("", "")  # the library prints nothing
