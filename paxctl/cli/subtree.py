"""``paxctl tree``: a subtree drawn (or printed as JSON), read by ``paxctl.client.subtree``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from paxctl.cli.connect import complete_path, connection_options, local_option
from paxctl.cli.context import absolute, connect
from paxctl.cli.output import Output, console, data_fields, output_options, plural, preview
from paxctl.client.subtree import TreeNode, read_tree


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
