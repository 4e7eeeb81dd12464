"""``paxctl export`` and ``paxctl import``: a subtree as one JSON file, for backups and for
moving configuration between clusters (the file's format: ``paxctl.cli.dumpfile``).

Ephemeral nodes belong to sessions and are not exported (a note on stderr counts them).
Sequential nodes are exported under their full names and imported as plain nodes of those
names; the parent's sequence counter is not restored, so a later sequential create under an
imported parent may pick an imported name and fail NodeExists.

Export is consistent: it syncs, notes the zxid Z it is then sure to read at or after, and reads
every node with linearizable reads (children before data, so each node's stat postdates its
listing). A node whose mzxid or pzxid exceeds Z changed after Z; if none did, every node's
data and child list are exactly those at Z, so the dump is the subtree at one point. That
proof is per node, so the reads need no order across nodes: export reads a level at a time
with up to ``IN_FLIGHT`` reads outstanding (40,000 children: a minute one at a time). Otherwise
it reads again (``EXPORT_ATTEMPTS`` in all) and then fails with exit 4, as any conflict with a
concurrent writer does; it writes nothing then.

Import validates the whole dump before it connects (exit 7 for anything wrong), then reads
what already exists under the target: a node holding exactly the dumped data is left alone
(so an interrupted import can simply be run again), one with other data is a conflict (exit 4,
nothing written) unless ``--overwrite``, which sets it (guarded by the version it read); an
existing ephemeral is always a conflict. It writes in transactions sized to the cluster's
limits, parents first: each is atomic, the import as a whole is not, and a failure says how
far it got. Missing ancestors of the target are created (empty, as ``create --parents``).
Nodes under the target that the dump does not have are left alone: import merges, it never
deletes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from paxctl.cli.connect import complete_path, connection_options
from paxctl.cli.context import absolute, connect
from paxctl.cli.dumpfile import (
    Conflict,
    Dump,
    DumpError,
    DumpNode,
    parent_rel,
    read_dump_file,
    render_dump,
    under,
    write_atomically,
)
from paxctl.cli.output import Output, output_options, progress
from paxctl.cli.subtree import IN_FLIGHT
from paxctl.client import Client, ClientError, Indeterminate, SyncClient
from paxctl.statemachine.errors import (
    BadArguments,
    DataTooLarge,
    MultiError,
    NoNode,
    ZnodeError,
)
from paxctl.statemachine.ops import MAX_DATA, MAX_MULTI_OPS, Create, SetData, encode_op
from paxctl.statemachine.paths import validate_path

#: Reads of the whole subtree before export gives up on a subtree that keeps changing.
EXPORT_ATTEMPTS = 3

#: Encoded size of one import transaction: well inside the client frame limit (4 MiB), and
#: near the 2 MiB the core keeps its batches at. ``Multi`` itself caps ops and total data.
BATCH_BYTES = 2 * 1024 * 1024

T = TypeVar("T")


# ------------------------------------------------------------------ export


class Changed(Exception):
    """The subtree changed while it was read (at ``path``); reading it again may succeed."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class Exported:
    dump: Dump
    ephemerals: int
    read_zxid: int  # the point the dump is proven to show (its zxid is the subtree's last change)


def kind_of(stat: dict[str, Any]) -> tuple[str, int]:
    """A node's kind and TTL from its stat (nodes say ``kind`` only when not persistent)."""
    kind = stat.get("kind", "persistent")
    return kind, stat.get("ttl_ms", 0) if kind == "ttl" else 0


Read = tuple[bytes, dict[str, Any]]


@dataclass(frozen=True)
class Pending:
    """A node still to read: its path relative to the root, its stat as its parent's listing
    showed it, and its data and stat when the listing read them already (see ``_listing``)."""

    rel: str
    listed: dict[str, Any]
    fetched: Read | None = None


def read_subtree(client: SyncClient, root: str, bar: Any = None) -> Exported:
    """Read the subtree at ``root`` as it was at one zxid, or raise ``Changed``.

    A level at a time with up to ``IN_FLIGHT`` reads outstanding, as ``tree`` reads: one
    read at a time waits a round trip per znode (40,000 children took a minute). ``client``
    needs only ``run`` and, for its asyncio ``client``, ``sync``, ``last_zxid``, ``get`` and
    ``children`` (the tests pass a fake).
    """
    return client.run(_read_subtree(client.client, root, bar))


async def _read_subtree(client: Client, root: str, bar: Any) -> Exported:
    """Reads per node: internal nodes two (children, then get: the get's stat, taken after
    the listing, proves the listing unchanged since Z), leaves with data one, empty leaves
    none (their stat in the parent's listing, taken after Z, already proves them). The order
    of reads across nodes does not matter: each node's proof is its own."""
    await client.sync()
    start = client.last_zxid
    last_change = 0
    ephemerals = 0
    slots = asyncio.Semaphore(IN_FLIGHT)
    nodes: dict[str, DumpNode] = {}
    seen = 1  # nodes known of so far, for the progress bar

    def found(more: int) -> None:
        nonlocal seen
        seen += more
        if bar is not None:
            bar.total(seen)

    def check(path: str, stat: dict[str, Any]) -> None:
        nonlocal last_change
        changed = max(stat["mzxid"], stat["pzxid"])  # czxid <= mzxid
        if changed > start:
            raise Changed(path)
        last_change = max(last_change, changed)

    async def get(path: str) -> Read:
        async with slots:
            return await client.get(path)

    async def load(node: Pending) -> list[Pending]:
        """Read ``node`` (raising ``Changed`` if it changed after Z); its children to read."""
        nonlocal ephemerals
        path = under(root, node.rel)
        if node.listed["ephemeralOwner"]:
            ephemerals += 1
            return []
        sub = None
        try:
            if node.listed["numChildren"]:
                sub = await _listing(client, path, slots)
                data, stat = await get(path)
            elif node.fetched is not None:
                data, stat = node.fetched
            elif node.listed["dataLength"]:
                data, stat = await get(path)
            else:
                data, stat = b"", node.listed
        except NoNode:  # deleted after its parent was listed
            raise Changed(path) from None
        check(path, stat)
        if sub is None and stat["numChildren"]:
            raise Changed(path)
        nodes[node.rel] = DumpNode(node.rel, data, *kind_of(stat))
        if bar is not None:
            bar.advance()
        if sub is None:
            return []
        found(len(sub))
        return [Pending(f"{node.rel}/{name}", *sub[name]) for name in sub]

    sub = await _listing(client, root, slots)  # NoNode here is the user's: exit 3
    data, stat = await client.get(root)
    if stat["ephemeralOwner"]:
        raise click.UsageError(f"{root} is an ephemeral node; it belongs to its session")
    check(root, stat)
    nodes[""] = DumpNode("", data, *kind_of(stat))
    found(len(sub))
    if bar is not None:
        bar.advance()
    level = [Pending(name, *sub[name]) for name in sub]
    while level:
        loaded = await _all(load(node) for node in level)
        level = [child for children in loaded for child in children]
    # Sorted pre-order (parents first, siblings sorted): comparing paths component-wise puts
    # a parent right before its descendants. Byte-identical re-exports depend on it.
    order = sorted(nodes, key=lambda rel: rel.split("/"))
    return Exported(Dump(root, last_change, [nodes[rel] for rel in order]), ephemerals, start)


async def _listing(
    client: Client, path: str, slots: asyncio.Semaphore
) -> dict[str, tuple[dict[str, Any], Read | None]]:
    """``path``'s children: each one's stat, and its data when already read. One read; for
    the rare parent whose children's stats do not fit in one reply (DataTooLarge), the names
    and then each child's get, many at once (the data comes with the stat: one read each)."""
    try:
        async with slots:
            listed = await client.children(path, stats=True)
        return {name: (listed["stats"][name], None) for name in listed["children"]}
    except DataTooLarge:
        async with slots:
            names = await client.children(path)

    async def one(name: str) -> tuple[dict[str, Any], Read]:
        async with slots:
            try:
                data, stat = await client.get(under(path, name))
            except NoNode:  # deleted after the names were listed
                raise Changed(under(path, name)) from None
        return stat, (data, stat)

    found = await _all(one(name) for name in names)
    return dict(zip(names, found, strict=True))


async def _all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coros`` concurrently; on the first failure cancel the rest (a changed subtree
    is read again from the start: the other reads are wasted)."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def export_subtree(client: SyncClient, root: str, attempts: int = EXPORT_ATTEMPTS) -> Exported:
    """``read_subtree``, again while the subtree changes under it, then ``Conflict``."""
    for attempt in range(1, attempts + 1):
        try:
            with progress("exporting") as bar:
                return read_subtree(client, root, bar)
        except Changed as exc:
            if attempt < attempts:
                click.echo(
                    f"paxctl: {exc.path} changed during the export; reading {root} again",
                    err=True,
                )
    raise Conflict(
        f"{root} kept changing during the export ({attempts} attempts); nothing was written"
    )


@click.command("export")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the dump to FILE (replaced atomically) instead of stdout.",
)
@connection_options()
def export_(path: str, file: str | None, servers: str | None, timeout: float) -> None:
    """Dump the subtree at PATH (data and structure) as JSON.

    For backups and for moving configuration: `paxctl import` reads it back, here or in
    another cluster. The dump shows the subtree at one moment (a subtree that changes during
    the export is read again; exit 4 if it keeps changing). Ephemeral nodes are skipped;
    containers and TTL nodes keep their kind. The output is JSON already, so there is no -o.
    """
    root = absolute(path)
    with connect(servers, timeout) as client:
        exported = export_subtree(client, root)
    content = render_dump(exported.dump)
    if file is None or file == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        try:
            write_atomically(file, content)
        except OSError as exc:
            raise click.UsageError(f"-f {file}: {exc.strerror or exc}") from None
    if exported.ephemerals:
        many = "s" if exported.ephemerals > 1 else ""
        click.echo(
            f"paxctl: skipped {exported.ephemerals} ephemeral node{many} under {root} "
            "(they belong to their sessions)",
            err=True,
        )
    if sys.stderr.isatty():
        count = len(exported.dump.nodes)
        click.echo(
            f"exported {count} node{'s' if count != 1 else ''} of {root} "
            f"(as of zxid {exported.read_zxid})",
            err=True,
        )


# ------------------------------------------------------------------ import


@dataclass(frozen=True)
class Step:
    action: str  # "create", "update" or "unchanged"
    path: str  # absolute, in the cluster
    node: DumpNode
    version: int = -1  # of the existing node, for "update"

    def op(self) -> Create | SetData:
        if self.action == "update":
            return SetData(self.path, self.node.data, self.version)
        return Create(
            self.path,
            self.node.data,
            parents=self.node.path == "",  # the target's missing ancestors, as mkdir -p
            container=self.node.kind == "container",
            ttl_ms=self.node.ttl_ms,
        )


def target_steps(dump: Dump, target: str) -> list[Step]:
    """Every node's target path, checked (as a create would check it) before any reading."""
    steps = []
    for node in dump.nodes:
        step = Step("create", under(target, node.path), node)
        try:
            step.op()
        except ZnodeError as exc:
            raise DumpError(f"{node.path or '(root)'} at {step.path}: {exc}") from None
        steps.append(step)
    return steps


def plan_import(client: SyncClient, steps: list[Step], overwrite: bool) -> list[Step]:
    """What each node needs, from what exists now: below a node to be created nothing exists,
    so only nodes whose parent exists are read. ``Conflict`` (nothing written) for nodes in
    the way: ephemerals, or other data without ``overwrite``."""
    planned: list[Step] = []
    creating: set[str] = set()
    conflicts: list[str] = []
    with progress("checking", len(steps)) as bar:
        for step in steps:
            bar.advance()
            rel = step.node.path
            if rel and parent_rel(rel) in creating:
                creating.add(rel)
                planned.append(step)
                continue
            try:
                data, stat = client.get(step.path)
            except NoNode:
                creating.add(rel)
                planned.append(step)
                continue
            if stat["ephemeralOwner"]:
                conflicts.append(f"{step.path} (an ephemeral node)")
            elif data == step.node.data:
                planned.append(Step("unchanged", step.path, step.node))
            elif overwrite:
                planned.append(Step("update", step.path, step.node, stat["version"]))
            else:
                conflicts.append(f"{step.path} (other data)")
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (", ..." if len(conflicts) > 5 else "")
        hint = "" if overwrite else "; --overwrite replaces other data"
        raise Conflict(
            f"{len(conflicts)} existing node{'s are' if len(conflicts) > 1 else ' is'} in "
            f"the way: {shown}; nothing was written{hint}"
        )
    return planned


def batches(steps: list[Step]) -> Iterator[list[Step]]:
    """Consecutive steps in transactions the cluster accepts: at most ``MAX_MULTI_OPS``
    operations, ``MAX_DATA`` bytes of data and ``BATCH_BYTES`` encoded."""
    batch: list[Step] = []
    data = size = 0
    for step in steps:
        op_size, op_data = len(encode_op(step.op())) + 8, len(step.node.data)
        full = len(batch) >= MAX_MULTI_OPS or data + op_data > MAX_DATA
        if batch and (full or size + op_size > BATCH_BYTES):
            yield batch
            batch, data, size = [], 0, 0
        batch.append(step)
        data += op_data
        size += op_size
    if batch:
        yield batch


def apply_plan(client: SyncClient, changes: list[Step]) -> None:
    """Write ``changes`` in atomic batches; on a failure, say how far the import got."""
    done = 0
    with progress("importing", len(changes)) as bar:
        for batch in batches(changes):
            try:
                client.multi([step.op() for step in batch])
            except (ZnodeError, ClientError) as exc:
                fate = (
                    "may or may not have been applied"
                    if isinstance(exc, Indeterminate)
                    else "changed nothing"
                )
                click.echo(
                    f"paxctl: import stopped after {done} of {len(changes)} changes; the "
                    f"failing transaction ({len(batch)} changes) {fate}. Running the import "
                    "again finishes it: nodes already holding the dumped data are skipped.",
                    err=True,
                )
                if isinstance(exc, MultiError):
                    raise exc.error from None
                raise
            done += len(batch)
            bar.advance(len(batch))


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--to",
    "to",
    metavar="PATH",
    shell_complete=complete_path,
    help="Put the dump's root at PATH (default: where it was exported from).",
)
@click.option("--overwrite", is_flag=True, help="Replace the data of nodes that already exist.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would change; write nothing.")
@connection_options()
@output_options
def import_(
    file: str,
    to: str | None,
    overwrite: bool,
    dry_run: bool,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Create the subtree of dump FILE (from `paxctl export`; - for stdin).

    Parents first, at --to or where it was exported from. Nodes that already hold the dumped
    data are skipped, so an interrupted import can be run again. A node with other data stops
    the import before anything is written (exit 4) unless --overwrite. Nodes the dump lacks
    are left alone. A damaged dump: exit 7, nothing written.
    """
    dump = read_dump_file(file)
    target = dump.root if to is None else absolute(to)
    try:
        validate_path(target)
    except BadArguments as exc:
        raise click.UsageError(f"--to: {exc}") from None
    steps = target_steps(dump, target)
    with connect(servers, timeout) as client:
        planned = plan_import(client, steps, overwrite)
        changes = [s for s in planned if s.action != "unchanged"]
        if not dry_run:
            apply_plan(client, changes)
    counts = {a: sum(s.action == a for s in planned) for a in ("create", "update", "unchanged")}
    doc: dict[str, Any] = {
        "root": target,
        "created": counts["create"],
        "updated": counts["update"],
        "skipped": counts["unchanged"],
        "dry_run": dry_run,
    }
    actions = [{"action": s.action, "path": s.path} for s in planned] if dry_run else None
    if actions is not None:
        doc["actions"] = actions

    def text() -> None:
        for step in planned if dry_run else ():
            click.echo(f"{step.action} {step.path}")
        head = "dry run, nothing written" if dry_run else "imported"
        click.echo(
            f"{head}: {target}: {counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged (already holding the dumped data)",
            err=True,
        )

    out.emit(doc, text, items=actions)
