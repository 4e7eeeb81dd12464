"""Export's consistency check and import's partial-failure report, against a fake client.

Racing real writes against a real export is not deterministic; a fake tree that changes right
before a chosen read is. The fake keeps zxids and stats as the cluster does (a create or delete
bumps the parent's pzxid, a set the node's mzxid), which is all the check relies on.

Export reads a level at a time with many reads in flight (as ``SyncClient.run`` runs them on
the asyncio client); every read of the fake yields to the event loop first, so the reads of a
level really do overlap, and the change hooked before read N lands while others are pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from paxctl.cli import exits
from paxctl.cli.transfer import InTheWay, exporting, failures
from paxctl.client.dump import Dump, DumpNode
from paxctl.client.subtree import IN_FLIGHT
from paxctl.client.transfer import (
    Changed,
    Conflict,
    ImportStopped,
    apply_plan,
    export_subtree,
    read_subtree,
    target_steps,
)
from paxctl.statemachine.errors import DataTooLarge, MultiError, NodeExists, NoNode


class FakeTree:
    """The cluster, seen through the asyncio client's calls export makes. Counts reads and
    how many were in flight at once."""

    def __init__(self) -> None:
        self.zxid = 100
        self.nodes: dict[str, dict] = {}
        self._put("/", b"", 0)
        self.last_zxid = 0
        self.reads = 0
        self.before_read: dict[int, Callable[[], None]] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.max_listing = 10**9  # children whose stats fit in one reply (else DataTooLarge)
        self.jitter = False

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

    async def _read(self) -> None:
        """A round trip: the request is sent, then answered (after a hook numbered as the
        request was sent has changed the tree, if one has) once the other requests already
        sent have gone out. With ``jitter`` the answers come back in another order."""
        self.reads += 1
        number = self.reads
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        for _ in range(number * 7 % 4 if self.jitter else 1):
            await asyncio.sleep(0)
        hook = self.before_read.pop(number, None)
        if hook is not None:
            hook()
        self.in_flight -= 1

    async def sync(self) -> None:
        self.last_zxid = self.zxid

    async def get(self, path: str) -> tuple[bytes, dict]:
        await self._read()
        if path not in self.nodes:
            raise NoNode(path)
        return self.nodes[path]["data"], dict(self.nodes[path]["stat"])

    async def children(self, path: str, stats: bool = False) -> Any:
        await self._read()
        if path not in self.nodes:
            raise NoNode(path)
        prefix = path.rstrip("/") + "/"
        names = sorted(
            p[len(prefix) :]
            for p in self.nodes
            if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]
        )
        if not stats:
            return names
        if len(names) > self.max_listing:
            raise DataTooLarge(f"the stats of {path}'s children exceed one reply")
        return {
            "children": names,
            "stats": {n: dict(self.nodes[prefix + n]["stat"]) for n in names},
        }


class Blocking:
    """What ``SyncClient`` is to the asyncio client: each call run to completion on its own,
    or many at once through ``run``."""

    def __init__(self, client: FakeTree) -> None:
        self.client = client

    @property
    def last_zxid(self) -> int:
        return self.client.last_zxid

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        return lambda *args, **kwargs: asyncio.run(method(*args, **kwargs))


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
    exported = read_subtree(Blocking(tree), "/app")
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
@pytest.mark.parametrize("read", [3, 4])
def test_a_change_that_a_later_read_would_see_is_caught(tree, change, where, read):
    # Read 3 is /app/a's children listing, read 4 its get (which must come after the listing:
    # its stat proves the listing still true): the change lands after /app was proven.
    tree.before_read[read] = lambda: change(tree)
    with pytest.raises(Changed) as caught:
        read_subtree(Blocking(tree), "/app")
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
    before = read_subtree(Blocking(tree), "/app").dump
    tree.reads = 0
    tree.before_read[3] = lambda: change(tree)
    assert read_subtree(Blocking(tree), "/app").dump == before


def wide(t: FakeTree, leaves: int, inner: int = 3, below: int = 100) -> None:
    """/wide: ``leaves`` leaves with data, and ``inner`` nodes of ``below`` such leaves each."""
    t.create("/wide", b"w")
    for i in range(leaves):
        t.create(f"/wide/leaf{i:04}", f"v{i}".encode())
    for i in range(inner):
        t.create(f"/wide/dir{i}", b"d")
        for j in range(below):
            t.create(f"/wide/dir{i}/n{j:03}", f"{i}/{j}".encode())


def test_a_level_is_read_with_many_reads_in_flight_and_no_more_reads_than_one_at_a_time():
    """The point of reading a level at a time: a wide level's reads overlap (up to
    ``IN_FLIGHT``) instead of waiting a round trip each, with no extra reads."""
    t = FakeTree()
    wide(t, 500)
    nodes = read_subtree(Blocking(t), "/wide").dump.nodes
    assert [n.path for n in nodes] == sorted((n.path for n in nodes), key=lambda p: p.split("/"))
    assert len(nodes) == 1 + 500 + 3 + 300 and nodes[1] == DumpNode("dir0", b"d")
    assert t.reads == 2 + 500 + 3 * 2 + 300  # inner nodes two reads, leaves with data one
    assert t.most_in_flight == IN_FLIGHT


def test_a_listing_too_large_for_one_reply_reads_each_child_once():
    """Stats that do not fit one reply: the names, then one get per child (stat and data in
    one read); an inner child is listed and read again after its listing, as any."""
    t = FakeTree()
    wide(t, 50, inner=1, below=5)
    t.max_listing = 10
    nodes = read_subtree(Blocking(t), "/wide").dump.nodes
    assert len(nodes) == 1 + 50 + 1 + 5 and nodes[-1] == DumpNode("leaf0049", b"v49")
    # /wide: refused listing, names, get; its 51 children a get each; dir0 listing and get
    # again; dir0's 5 leaves a get each.
    assert t.reads == 3 + 51 + 2 + 5
    assert t.most_in_flight > 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda t: t.set("/wide/leaf0040", b"new"), "/wide/leaf0040"),
        (lambda t: t.delete("/wide/leaf0040"), "/wide/leaf0040"),
        (lambda t: t.create("/wide/new"), "/wide"),
    ],
)
def test_a_change_while_a_large_listing_is_read_child_by_child_is_caught(change, where):
    t = FakeTree()
    wide(t, 50, inner=0)
    t.max_listing = 10
    t.before_read[3] = lambda: change(t)  # after the names, before the children's gets
    with pytest.raises(Changed) as caught:
        read_subtree(Blocking(t), "/wide")
    assert caught.value.path == where


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.set("/wide/leaf0090", b"new"),
        lambda t: t.set("/wide/dir1/n020", b"new"),
        lambda t: t.create("/wide/dir2/new"),
        lambda t: t.delete("/wide/dir0/n029"),
        lambda t: t.create("/wide/leaf0080/kid"),
    ],
)
@pytest.mark.parametrize("jitter", [False, True])
def test_wherever_a_change_lands_among_overlapping_reads_the_dump_is_never_mixed(change, jitter):
    """With many reads in flight, answers arrive after later requests were sent, and not
    always in the order sent. Whatever answer a change lands before, export either notices it
    or shows the subtree as of the sync: never a mix of before and after."""
    quiet = FakeTree()
    wide(quiet, 100, below=30)  # more leaves than IN_FLIGHT: some wait for a slot
    before = read_subtree(Blocking(quiet), "/wide").dump
    outcomes = set()
    for read in range(1, quiet.reads + 1, 4):
        t = FakeTree()
        wide(t, 100, below=30)
        t.jitter = jitter
        t.before_read[read] = lambda t=t: change(t)
        try:
            dump = read_subtree(Blocking(t), "/wide").dump
        except Changed:
            outcomes.add("changed")
        else:
            assert dump == before, f"a mixed dump with the change before read {read}"
            outcomes.add("as of the sync")
    assert outcomes == {"changed", "as of the sync"}  # both happen: the hooks do land


def test_a_change_before_the_sync_is_simply_part_of_the_dump(tree):
    tree.set("/app/a/deep", b"new")
    assert read_subtree(Blocking(tree), "/app").dump.nodes[2] == DumpNode("a/deep", b"new")


def test_export_reads_again_after_a_change_and_then_succeeds(tree, capsys):
    tree.before_read[3] = lambda: tree.set("/app/a/deep", b"changed meanwhile")
    exported = exporting(Blocking(tree), "/app")  # paxctl export's: it says so on stderr
    assert DumpNode("a/deep", b"changed meanwhile") in exported.dump.nodes
    err = capsys.readouterr().err
    assert err == "paxctl: /app/a/deep changed during the export; reading /app again\n"


def test_export_gives_up_on_a_subtree_that_keeps_changing(tree, capsys):
    class Busy(FakeTree):
        async def get(self, path: str) -> tuple[bytes, dict]:
            if path == "/app/a/deep":
                self.set(path, b"tick")
            return await super().get(path)

    busy = Busy()
    busy.__dict__.update(tree.__dict__)
    changed: list[str] = []
    with pytest.raises(Conflict) as caught:
        export_subtree(Blocking(busy), "/app", attempts=3, on_changed=changed.append)
    assert "kept changing during the export (3 attempts); nothing was written" in str(caught.value)
    assert changed == ["/app/a/deep", "/app/a/deep"]  # told before each new attempt
    with pytest.raises(InTheWay) as cli_caught:
        exporting(Blocking(busy), "/app")
    assert cli_caught.value.exit_code == exits.CONFLICT
    assert capsys.readouterr().err.count("reading /app again") == 2


def test_a_missing_root_is_the_users_nonode(tree):
    with pytest.raises(NoNode):
        read_subtree(Blocking(tree), "/nope")


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
    with pytest.raises(ImportStopped) as stopped:
        apply_plan(Recorder(fail_on=2), steps)
    assert (stopped.value.done, stopped.value.total, stopped.value.size) == (1000, 2501, 1000)
    assert isinstance(stopped.value.error, NodeExists)
    client = Recorder(fail_on=2)
    with pytest.raises(NodeExists) as caught, failures():  # paxctl import: the cause, as a
        apply_plan(client, steps)  # lone create would raise it
    assert str(caught.value) == "/r/n1002"
    assert len(client.calls) == 2
    err = capsys.readouterr().err
    assert "import stopped after 1000 of 2501 changes" in err
    assert "the failing transaction (1000 changes) changed nothing" in err
    assert "Running the import again finishes it" in err


def test_the_whole_tree_is_exported_with_paths_relative_to_the_root():
    t = FakeTree()
    for path in ("/app", "/app/a", "/b"):
        t.create(path, path.encode())
    nodes = read_subtree(Blocking(t), "/").dump.nodes
    assert nodes == [DumpNode("", b""), DumpNode("app", b"/app"), DumpNode("app/a", b"/app/a"),
                     DumpNode("b", b"/b")]  # fmt: skip
