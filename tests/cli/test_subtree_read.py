"""``read_tree`` reads a level at a time with many reads in flight; what it returns must not
depend on that: pre-order, children sorted as listed, znodes deleted meanwhile left out."""

from __future__ import annotations

import asyncio

from paxctl.client.subtree import IN_FLIGHT, delete_tree, read_tree
from paxctl.statemachine.errors import NoNode


def stat(children: int = 0, size: int = 0) -> dict[str, int]:
    return {"numChildren": children, "dataLength": size, "version": 0}


class FakeClient:
    """The async calls ``read_tree`` makes, over a dict; counts reads in flight."""

    def __init__(self, tree: dict[str, bytes], gone: set[str]) -> None:
        self.tree = tree
        self.gone = gone  # listed by their parent, deleted before their own read
        self.in_flight = 0
        self.most_in_flight = 0

    async def _read(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # let the other reads of the level start
        self.in_flight -= 1

    def _kids(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        rests = (p[len(prefix) :] for p in self.tree if p != path and p.startswith(prefix))
        return sorted(rest for rest in rests if "/" not in rest)

    def _stat(self, path: str) -> dict[str, int]:
        return stat(len(self._kids(path)), len(self.tree[path]))

    async def stat(self, path: str, local: bool = False) -> dict[str, int]:
        return self._stat(path)

    async def get(self, path: str, local: bool = False) -> tuple[bytes, dict[str, int]]:
        await self._read()
        if path in self.gone:
            raise NoNode(path)
        return self.tree[path], self._stat(path)

    async def children(self, path: str, stats: bool = False, local: bool = False) -> dict:
        await self._read()
        if path in self.gone:
            raise NoNode(path)
        names = self._kids(path)
        return {
            "children": names,
            "stats": {n: self._stat(f"{path.rstrip('/')}/{n}") for n in names},
        }


class Sync:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def run(self, coro):  # what SyncClient.run does
        return asyncio.run(coro)


def test_pre_order_with_data_and_deleted_znodes_left_out():
    tree = {"/a": b"", "/a/x": b"1", "/a/y": b"", "/a/y/z": b"2", "/a/w": b"3", "/a/v": b""}
    tree.update({"/a/v/u": b"4"})
    client = FakeClient(tree, gone={"/a/w", "/a/v"})
    root = read_tree(Sync(client), "/a", with_data=True)  # type: ignore[arg-type]
    assert [(n.path, n.data) for n in root.walk()] == [
        ("/a", b""),
        ("/a/x", b"1"),
        ("/a/y", b""),
        ("/a/y/z", b"2"),
    ]


def test_depth_limits_and_reads_overlap_but_never_beyond_the_limit():
    tree = {"/r": b""} | {f"/r/n{i:03}": b"d" for i in range(200)}
    tree |= {f"/r/n000/m{i}": b"" for i in range(3)}
    client = FakeClient(tree, gone=set())
    root = read_tree(Sync(client), "/r", depth=1, with_data=True)  # type: ignore[arg-type]
    assert len(root.children) == 200 and root.children[0].children == []
    assert 1 < client.most_in_flight <= IN_FLIGHT


class Deleting(Sync):
    """A SyncClient for ``delete_tree``: reads from the fake, records the transactions."""

    def __init__(self, client: FakeClient) -> None:
        super().__init__(client)
        self.batches: list[list[str]] = []

    def multi(self, ops) -> None:
        self.batches.append([op.path for op in ops])


def test_rm_r_of_the_root_keeps_paxctl_and_deletes_children_first():
    tree = {"/": b"", "/a": b"", "/a/b": b"x", "/paxctl": b"", "/paxctl/locks": b"", "/z": b""}
    sync = Deleting(FakeClient(tree, gone=set()))
    seen: list[tuple[int, int | None]] = []
    deleted = delete_tree(sync, "/", lambda done, total: seen.append((done, total)))  # type: ignore[arg-type]
    assert deleted == ["/z", "/a/b", "/a"] and sync.batches == [deleted]
    assert seen == [(0, 3), (3, 3)]  # progress: before the first batch, after each
    sync = Deleting(FakeClient(tree, gone=set()))
    assert delete_tree(sync, "/paxctl") == ["/paxctl/locks", "/paxctl"]  # when named, it goes
