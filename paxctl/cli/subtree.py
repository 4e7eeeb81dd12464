"""Whole subtrees: ``paxctl tree`` and ``rm --recursive``.

Both read a subtree one level at a time (a ``children`` read with stats per inner node), so
what they see is not one point in time while others write under it. ``rm -r`` deletes deepest
first in transactions of up to ``MAX_MULTI_OPS`` deletes, one consensus round each instead of
one per node; when someone else changes the subtree meanwhile (a transaction fails NotEmpty or
NoNode) it reads the subtree again and goes on, a few times, before giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from paxctl.cli.connect import complete_path, connection_options, local_option
from paxctl.cli.context import absolute, connect
from paxctl.cli.output import Output, console, data_fields, output_options, plural, preview
from paxctl.client import Client, SyncClient
from paxctl.statemachine.errors import DataTooLarge, NoNode, NotEmpty
from paxctl.statemachine.ops import MAX_MULTI_OPS, Delete

#: Times ``rm -r`` reads the subtree again after a concurrent change before it gives up.
DELETE_ATTEMPTS = 4


def child_path(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


@dataclass
class TreeNode:
    path: str
    stat: dict[str, Any]
    data: bytes | None = None
    children: list[TreeNode] = field(default_factory=list)
    gone: bool = False  # deleted between its parent's listing and its own read

    def prune(self) -> None:
        for node in self.walk():
            node.children = [child for child in node.children if not child.gone]

    def walk(self) -> Iterator[TreeNode]:
        """This node, then its descendants, parents before children (pre-order). Iterative:
        paths may nest ~2,000 deep, deeper than Python recursion goes."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))  # read after the yield: pruning is seen


def read_tree(
    client: SyncClient,
    path: str,
    *,
    depth: int | None = None,
    with_data: bool = False,
    local: bool = False,
) -> TreeNode:
    """The subtree at ``path`` (down to ``depth`` levels below it), with data if asked.

    A level at a time, with up to ``IN_FLIGHT`` reads outstanding: one read at a time waits
    a round trip per znode (`tree` of 5,051 znodes: 6.3 s on the CI machine), 64 at once
    share them (1.1 s).
    """
    return client.run(_read_tree(client.client, path, depth, with_data, local))


#: Reads ``read_tree`` keeps in flight at once.
IN_FLIGHT = 64


async def listing(client: Client, path: str, *, local: bool = False) -> dict[str, Any]:
    """``path``'s children with their stats (``{"children", "stats"}``). The stats of some
    30,000 children no longer fit in one 4 MiB reply (DataTooLarge): then the names, and each
    child's stat with ``IN_FLIGHT`` reads at once; a child deleted meanwhile is left out."""
    try:
        listed: dict[str, Any] = await client.children(path, stats=True, local=local)
        return listed
    except DataTooLarge:
        names = await client.children(path, local=local)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(name: str) -> tuple[str, dict[str, Any] | None]:
        async with slots:
            try:
                return name, await client.stat(child_path(path, name), local=local)
            except NoNode:
                return name, None

    found = await asyncio.gather(*(one(name) for name in names))
    stats = {name: st for name, st in found if st is not None}
    return {"children": [name for name in names if name in stats], "stats": stats}


async def _read_tree(
    client: Client, path: str, depth: int | None, with_data: bool, local: bool
) -> TreeNode:
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def load(node: TreeNode, level: int) -> list[TreeNode]:
        """Fill in ``node``'s data and children; the children to load next."""
        async with slots:
            try:
                if with_data:
                    has_data = node.stat.get("dataLength")
                    node.data = (await client.get(node.path, local=local))[0] if has_data else b""
                if not node.stat.get("numChildren") or (depth is not None and level >= depth):
                    return []
                listed = await listing(client, node.path, local=local)
            except NoNode:  # deleted since its parent was listed
                node.gone = True
                return []
        node.children = [
            TreeNode(child_path(node.path, name), listed["stats"][name])
            for name in listed["children"]
        ]
        return node.children

    root = TreeNode(path, await client.stat(path, local=local))
    level, frontier = 0, [root]
    while frontier:
        found = await asyncio.gather(*(load(node, level) for node in frontier))
        frontier = [child for children in found for child in children]
        level += 1
    root.prune()
    return root


#: What ``rm -r /`` leaves: the command line's locks, elections and run-once records, whose
#: loss would kill every holder and let jobs run again. ``rm -r /paxctl`` still deletes it.
KEPT_BY_ROOT = "/paxctl"


def _deepest_first(client: SyncClient, path: str) -> list[str]:
    nodes = [n.path for n in read_tree(client, path).walk()]
    nodes.reverse()  # children after parents in pre-order, so reversed: children first
    if path == "/":
        nodes = [p for p in nodes if p != KEPT_BY_ROOT and not p.startswith(KEPT_BY_ROOT + "/")]
    return [p for p in nodes if p != "/"]


def delete_tree(client: SyncClient, path: str) -> list[str]:
    """Delete ``path`` and everything under it; the deleted paths, deepest first."""
    from paxctl.cli.output import progress

    deleted: list[str] = []
    if path == "/":
        click.echo(f"paxctl: keeping {KEPT_BY_ROOT} (locks, elections, run-once records); "
                   f"rm -r {KEPT_BY_ROOT} deletes it", err=True)  # fmt: skip
    with progress(f"deleting {path}") as bar:
        for attempt in range(DELETE_ATTEMPTS):
            try:
                pending = _deepest_first(client, path)
            except NoNode:
                if attempt == 0:
                    raise
                return deleted  # someone else deleted the rest
            bar.total(len(deleted) + len(pending))
            try:
                for start in range(0, len(pending), MAX_MULTI_OPS):
                    batch = pending[start : start + MAX_MULTI_OPS]
                    client.multi([Delete(p, -1) for p in batch])
                    deleted += batch
                    bar.advance(len(batch))
                return deleted
            except (NotEmpty, NoNode):
                if attempt == DELETE_ATTEMPTS - 1:
                    raise
    return deleted  # pragma: no cover - the loop returns or raises


def node_doc(node: TreeNode) -> dict[str, Any]:
    doc: dict[str, Any] = {"path": node.path, "stat": node.stat}
    if node.data is not None:
        doc.update(data_fields(node.data))
    return doc


@contextlib.contextmanager
def deep_enough(root: TreeNode) -> Iterator[None]:
    """Room in the recursion limit for printing a deep tree (json and rich recurse per level;
    paths allow ~2,000 levels, Python's default limit is 1,000 frames)."""
    depth = max(n.path.count("/") for n in root.walk()) - root.path.rstrip("/").count("/")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * depth + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def nested_doc(root: TreeNode) -> dict[str, Any]:
    """``tree -o json``: each node's document with its ``children`` nested (built without
    recursion, for deep trees)."""
    docs: dict[int, dict[str, Any]] = {}
    for node in root.walk():  # parents first: a child's dict exists, empty, in its parent's
        doc = docs.setdefault(id(node), {})
        doc.update(node_doc(node))
        doc["children"] = [docs.setdefault(id(child), {}) for child in node.children]
    return docs[id(root)]


def _label(node: TreeNode, show_data: bool) -> str:
    from rich.markup import escape

    name = node.path.rsplit("/", 1)[-1] or "/"
    st = node.stat
    label = f"[bold blue]{escape(name)}[/]" if st.get("numChildren") else escape(name)
    notes = [f"v{st['version']}", f"{st['dataLength']} B"]
    if st.get("ephemeralOwner"):
        notes.append(f"ephemeral {st['ephemeralOwner']:#x}")
    if st.get("numChildren") and not node.children:
        count = st["numChildren"]
        notes.append(f"{count} {plural(count, 'child', 'children')} not shown")
    label += f"  [dim]({', '.join(notes)})[/]"
    if show_data and node.data:
        label += f"  [green]{escape(preview(node.data))}[/]"
    return label


@click.command()
@click.argument("path", default=".", shell_complete=complete_path)
@click.option(
    "-d", "--depth", type=click.IntRange(min=0), metavar="N", help="Levels below PATH to show."
)
@click.option("--no-data", is_flag=True, help="Structure only: do not read the data.")
@local_option
@connection_options()
@output_options
def tree(
    path: str,
    depth: int | None,
    no_data: bool,
    local: bool,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Show the subtree at PATH (default / or the shell's directory), with a preview of
    each znode's data. JSON nests each node's `children`; ndjson prints one node per line."""
    from paxctl.cli.context import shell_context

    path = "/" if path == "." and shell_context() is None else absolute(path)
    with connect(servers, timeout) as client:
        root = read_tree(client, path, depth=depth, with_data=not no_data, local=local)

    def text() -> None:
        from rich.tree import Tree

        branches = {id(root): Tree(_label(root, not no_data))}
        for node in root.walk():  # parents first, so each one's branch exists already
            for child in node.children:
                branches[id(child)] = branches[id(node)].add(_label(child, not no_data))
        console().print(branches[id(root)])

    items = [node_doc(n) for n in root.walk()]
    with deep_enough(root):
        out.emit(nested_doc(root), text, items=items)
