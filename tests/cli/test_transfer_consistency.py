"""Export's consistency check and import's partial-failure report, against a fake client.

Racing real writes against a real export is not deterministic; a fake tree that changes right
before a chosen read is. The fake keeps zxids and stats as the cluster does (a create or delete
bumps the parent's pzxid, a set the node's mzxid), which is all the check relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paxctl.cli import exits
from paxctl.cli.dumpfile import Conflict, Dump, DumpNode
from paxctl.cli.transfer import Changed, apply_plan, export_subtree, read_subtree, target_steps
from paxctl.statemachine.errors import MultiError, NodeExists, NoNode


class FakeTree:
    def __init__(self) -> None:
        self.zxid = 100
        self.nodes: dict[str, dict] = {}
        self._put("/", b"", 0)
        self.last_zxid = 0
        self.reads = 0
        self.before_read: dict[int, Callable[[], None]] = {}

    # writes, as the cluster applies them

    def _put(self, path: str, data: bytes, owner: int) -> None:
        self.nodes[path] = {
            "data": data,
            "stat": {
                "czxid": self.zxid,
                "mzxid": self.zxid,
                "pzxid": self.zxid,
                "ephemeralOwner": owner,
                "dataLength": len(data),
                "numChildren": 0,
                "version": 0,
            },
        }

    def _parent(self, path: str) -> dict:
        return self.nodes[path.rsplit("/", 1)[0] or "/"]["stat"]

    def create(self, path: str, data: bytes = b"", owner: int = 0) -> None:
        self.zxid += 1
        self._put(path, data, owner)
        parent = self._parent(path)
        parent["pzxid"] = self.zxid
        parent["numChildren"] += 1

    def set(self, path: str, data: bytes) -> None:
        self.zxid += 1
        node = self.nodes[path]
        node["data"] = data
        node["stat"].update(mzxid=self.zxid, dataLength=len(data))
        node["stat"]["version"] += 1

    def delete(self, path: str) -> None:
        self.zxid += 1
        del self.nodes[path]
        parent = self._parent(path)
        parent["pzxid"] = self.zxid
        parent["numChildren"] -= 1

    # the client calls export makes

    def _read(self) -> None:
        self.reads += 1
        hook = self.before_read.pop(self.reads, None)
        if hook is not None:
            hook()

    def sync(self) -> None:
        self.last_zxid = self.zxid

    def get(self, path: str) -> tuple[bytes, dict]:
        self._read()
        if path not in self.nodes:
            raise NoNode(path)
        return self.nodes[path]["data"], dict(self.nodes[path]["stat"])

    def children(self, path: str, stats: bool = False) -> dict:
        self._read()
        if path not in self.nodes:
            raise NoNode(path)
        prefix = path.rstrip("/") + "/"
        names = sorted(
            p[len(prefix) :]
            for p in self.nodes
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        )
        return {
            "children": names,
            "stats": {n: dict(self.nodes[prefix + n]["stat"]) for n in names},
        }


@pytest.fixture
def tree() -> FakeTree:
    t = FakeTree()
    t.create("/app", b"root")
    t.create("/app/b", b"")
    t.create("/app/a", b"1")
    t.create("/app/a/deep", b"2")
    t.create("/app/a/empty", b"")
    t.create("/app/lock", b"me", owner=42)
    t.create("/elsewhere", b"")
    return t


def test_a_quiet_subtree_is_read_in_sorted_preorder_without_ephemerals(tree):
    exported = read_subtree(tree, "/app")
    assert exported.dump.nodes == [
        DumpNode("", b"root"),
        DumpNode("a", b"1"),
        DumpNode("a/deep", b"2"),
        DumpNode("a/empty", b""),
        DumpNode("b", b""),
    ]
    assert exported.ephemerals == 1
    assert exported.read_zxid == tree.zxid
    # The last change under /app was the ephemeral's creation (the root's pzxid), not the
    # later write elsewhere: that write must not make a re-export differ.
    assert exported.dump.zxid == tree.nodes["/app"]["stat"]["pzxid"] == tree.zxid - 1
    # Inner nodes take two reads (children, then get), a leaf with data one, and empty leaves
    # none: their parent's listing, taken after the sync, proves them.
    assert tree.reads == 2 + 2 + 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda t: t.set("/app/a/deep", b"new"), "/app/a/deep"),  # data changed
        (lambda t: t.create("/app/a/new"), "/app/a"),  # a child appeared
        (lambda t: t.delete("/app/a/deep"), "/app/a"),  # a child went
        (lambda t: t.delete("/app/a"), "/app/a"),  # gone after its parent was listed
        (lambda t: t.create("/app/a/deep/kid"), "/app/a/deep"),  # a listed leaf grew a child
    ],
)
def test_a_change_that_a_later_read_would_see_is_caught(tree, change, where):
    # Read 3 is /app/a's children listing: the change lands after /app was proven.
    tree.before_read[3] = lambda: change(tree)
    with pytest.raises(Changed) as caught:
        read_subtree(tree, "/app")
    assert caught.value.path == where


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.delete("/app/b"),
        lambda t: t.set("/app/b", b"x"),
        lambda t: t.create("/app/b/kid"),
        lambda t: t.set("/app", b"new root"),
    ],
)
def test_a_change_to_what_was_already_proven_leaves_the_dump_at_the_sync_point(tree, change):
    """/app (and with its listing the empty leaf /app/b) were proven as of the sync before the
    change: the dump shows them as they were then, which is the point it claims."""
    before = read_subtree(tree, "/app").dump
    tree.reads = 0
    tree.before_read[3] = lambda: change(tree)
    assert read_subtree(tree, "/app").dump == before


def test_a_change_before_the_sync_is_simply_part_of_the_dump(tree):
    tree.set("/app/a/deep", b"new")
    assert read_subtree(tree, "/app").dump.nodes[2] == DumpNode("a/deep", b"new")


def test_export_reads_again_after_a_change_and_then_succeeds(tree, capsys):
    tree.before_read[3] = lambda: tree.set("/app/a/deep", b"changed meanwhile")
    exported = export_subtree(tree, "/app")
    assert DumpNode("a/deep", b"changed meanwhile") in exported.dump.nodes
    err = capsys.readouterr().err
    assert err == "paxctl: /app/a/deep changed during the export; reading /app again\n"


def test_export_gives_up_on_a_subtree_that_keeps_changing(tree, capsys):
    class Busy(FakeTree):
        def get(self, path: str) -> tuple[bytes, dict]:
            if path == "/app/a/deep":
                self.set(path, b"tick")
            return super().get(path)

    busy = Busy()
    busy.__dict__.update(tree.__dict__)
    with pytest.raises(Conflict) as caught:
        export_subtree(busy, "/app", attempts=3)
    assert caught.value.exit_code == exits.CONFLICT
    assert "kept changing during the export (3 attempts); nothing was written" in str(caught.value)
    assert capsys.readouterr().err.count("reading /app again") == 2


def test_a_missing_root_is_the_users_nonode(tree):
    with pytest.raises(NoNode):
        read_subtree(tree, "/nope")


class Recorder:
    def __init__(self, fail_on: int) -> None:
        self.calls: list[list] = []
        self.fail_on = fail_on

    def multi(self, ops: list) -> list:
        self.calls.append(ops)
        if len(self.calls) == self.fail_on:
            raise MultiError(3, NodeExists(ops[3].path))
        return [None] * len(ops)


def test_a_failed_transaction_says_how_far_the_import_got(capsys):
    nodes = [DumpNode("", b"")] + [DumpNode(f"n{i}", b"") for i in range(2500)]
    steps = target_steps(Dump("/r", 0, nodes), "/r")
    client = Recorder(fail_on=2)
    with pytest.raises(NodeExists) as caught:  # the cause, as a lone create would raise it
        apply_plan(client, steps)
    assert str(caught.value) == "/r/n1002"
    assert len(client.calls) == 2
    err = capsys.readouterr().err
    assert "import stopped after 1000 of 2501 changes" in err
    assert "the failing transaction (1000 changes) changed nothing" in err
    assert "Running the import again finishes it" in err
