"""Export and import of a subtree (``paxctl export``/``import``): a subtree as one dump, for
backups and for moving configuration between clusters (the format: ``paxctl.client.dump``).

Ephemeral nodes belong to sessions and are not exported (``Exported.ephemerals`` counts them).
Sequential nodes are exported under their full names and imported as plain nodes of those
names; the parent's sequence counter is not restored, so a later sequential create under an
imported parent may pick an imported name and fail NodeExists.

Export is consistent: it syncs, notes the zxid Z it is then sure to read at or after, and reads
every node with linearizable reads (children before data, so each node's stat postdates its
listing). A node whose mzxid or pzxid exceeds Z changed after Z; if none did, every node's
data and child list are exactly those at Z, so the dump is the subtree at one point. That
proof is per node, so the reads need no order across nodes: export reads a level at a time
with up to ``IN_FLIGHT`` reads outstanding (40,000 children: a minute one at a time). Otherwise
it reads again (``EXPORT_ATTEMPTS`` in all) and then raises ``Conflict`` (``paxctl export``
exits 4, as for any conflict with a concurrent writer); it writes nothing then.

Import validates the whole dump before it connects (``DumpError``), then reads
what already exists under the target: a node holding exactly the dumped data is left alone
(so an interrupted import can simply be run again), one with other data is a ``Conflict``
(nothing written) unless ``--overwrite``, which sets it (guarded by the version it read); an
existing ephemeral is always a conflict. It writes in transactions sized to the cluster's
limits, parents first: each is atomic, the import as a whole is not, and a failure says how
far it got (``ImportStopped``). Missing ancestors of the target are created (empty, as
``create --parents``). Nodes under the target that the dump does not have are left alone:
import merges, it never deletes.

Progress is reported to an optional callback ``progress(done, total)``; nothing here prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from paxctl.client.client import Client, ClientError, Indeterminate
from paxctl.client.dump import Dump, DumpError, DumpNode, parent_rel, under
from paxctl.client.subtree import IN_FLIGHT, Progress
from paxctl.client.sync import SyncClient
from paxctl.statemachine.errors import DataTooLarge, MultiError, NoNode, ZnodeError
from paxctl.statemachine.ops import MAX_DATA, MAX_MULTI_OPS, Create, SetData, encode_op

#: Reads of the whole subtree before export gives up on a subtree that keeps changing.
EXPORT_ATTEMPTS = 3

#: Encoded size of one import transaction: well inside the client frame limit (4 MiB), and
#: near the 2 MiB the core keeps its batches at. ``Multi`` itself caps ops and total data.
BATCH_BYTES = 2 * 1024 * 1024

T = TypeVar("T")


class Conflict(Exception):
    """The cluster's state is in the way (a subtree that kept changing, existing nodes):
    nothing was written."""


class EphemeralRoot(ValueError):
    """The subtree to export is an ephemeral node: it belongs to its session."""


class ImportStopped(Exception):
    """A transaction of ``apply_plan`` failed after ``done`` of ``total`` changes; the failing
    one (``size`` changes) changed nothing, or, when ``error`` is ``Indeterminate``, may or
    may not have been applied. ``error`` is the cause (a ``MultiError``'s own error)."""

    def __init__(self, done: int, total: int, size: int, error: Exception) -> None:
        fate = (
            "may or may not have been applied"
            if isinstance(error, Indeterminate)
            else "changed nothing"
        )
        super().__init__(
            f"import stopped after {done} of {total} changes; the failing transaction "
            f"({size} changes) {fate}"
        )
        self.done, self.total, self.size, self.error = done, total, size, error


def _quiet(done: int, total: int | None) -> None:
    pass


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


def read_subtree(client: SyncClient, root: str, progress: Progress | None = None) -> Exported:
    """Read the subtree at ``root`` as it was at one zxid, or raise ``Changed``.

    A level at a time with up to ``IN_FLIGHT`` reads outstanding, as ``tree`` reads: one
    read at a time waits a round trip per znode (40,000 children took a minute). ``client``
    needs only ``run`` and, for its asyncio ``client``, ``sync``, ``last_zxid``, ``get`` and
    ``children`` (the tests pass a fake).
    """
    return client.run(_read_subtree(client.client, root, progress or _quiet))


async def _read_subtree(client: Client, root: str, report: Progress) -> Exported:
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
        report(len(nodes), seen)

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
        report(len(nodes), seen)
        if sub is None:
            return []
        found(len(sub))
        return [Pending(f"{node.rel}/{name}", *sub[name]) for name in sub]

    sub = await _listing(client, root, slots)  # NoNode here is the user's: exit 3
    data, stat = await client.get(root)
    if stat["ephemeralOwner"]:
        raise EphemeralRoot(f"{root} is an ephemeral node; it belongs to its session")
    check(root, stat)
    nodes[""] = DumpNode("", data, *kind_of(stat))
    found(len(sub))
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


def export_subtree(
    client: SyncClient,
    root: str,
    attempts: int = EXPORT_ATTEMPTS,
    *,
    progress: Progress | None = None,
    on_changed: Callable[[str], None] | None = None,
) -> Exported:
    """``read_subtree``, again while the subtree changes under it (``on_changed(path)`` is
    told before each new attempt), then ``Conflict``."""
    for attempt in range(1, attempts + 1):
        try:
            return read_subtree(client, root, progress)
        except Changed as exc:
            if attempt < attempts and on_changed is not None:
                on_changed(exc.path)
    raise Conflict(
        f"{root} kept changing during the export ({attempts} attempts); nothing was written"
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


def plan_import(
    client: SyncClient, steps: list[Step], overwrite: bool, progress: Progress | None = None
) -> list[Step]:
    """What each node needs, from what exists now: below a node to be created nothing exists,
    so only nodes whose parent exists are read. ``Conflict`` (nothing written) for nodes in
    the way: ephemerals, or other data without ``overwrite``."""
    planned: list[Step] = []
    creating: set[str] = set()
    conflicts: list[str] = []
    report = progress or _quiet
    for done, step in enumerate(steps, 1):
        report(done, len(steps))
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


def apply_plan(client: SyncClient, changes: list[Step], progress: Progress | None = None) -> None:
    """Write ``changes`` in atomic batches; ``ImportStopped`` says how far it got if one fails."""
    report = progress or _quiet
    done = 0
    report(done, len(changes))
    for batch in batches(changes):
        try:
            client.multi([step.op() for step in batch])
        except (ZnodeError, ClientError) as exc:
            cause = exc.error if isinstance(exc, MultiError) else exc
            raise ImportStopped(done, len(changes), len(batch), cause) from exc
        done += len(batch)
        report(done, len(changes))


def import_dump(
    client: SyncClient, dump: Dump, target: str | None = None, *, overwrite: bool = False
) -> list[Step]:
    """Import ``dump`` at ``target`` (default: where it was exported from): the plan, each
    step's ``action`` create, update or unchanged. ``Conflict`` (nothing written) for nodes
    in the way; ``ImportStopped`` if a transaction fails (running it again finishes it)."""
    planned = plan_import(client, target_steps(dump, target or dump.root), overwrite)
    apply_plan(client, [step for step in planned if step.action != "unchanged"])
    return planned
